// Package ipam is mynet's IPAM driver: Docker's default IPAM semantics, with
// every pool and address persisted so that a restart loses nothing and never
// hands an address out twice.
package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// Address spaces, named as Docker's default IPAM names them.
const (
	LocalSpace  = "LocalDefault"
	GlobalSpace = "GlobalDefault"
)

// Option keys Docker sends.
const (
	optRequestType = "RequestAddressType"
	gatewayType    = "com.docker.network.gateway"
	optMAC         = "com.docker.network.endpoint.macaddress"
)

// Config wires a Driver.
type Config struct {
	Store  *state.Store
	Ranges []Range                        // where automatic pools are cut from
	Host   func() ([]netip.Prefix, error) // what automatic pools must avoid; HostNetworks if nil
	Log    *slog.Logger
	// OnRepair, when set, is told of each repair mynet doctor --fix makes.
	OnRepair func(kind string)
	// Cluster, when set, serves pools asked for with --ipam-opt network=NAME
	// from etcd; nil: such requests are refused.
	Cluster *cluster.Client
}

// Driver serves the IpamDriver protocol.
type Driver struct {
	store    *state.Store
	ranges   []Range
	host     func() ([]netip.Prefix, error)
	log      *slog.Logger
	onRepair func(kind string)

	cluster *cluster.Client

	mu       sync.Mutex // guards pools and autoLast; never held across a disk write or an etcd call
	pools    map[string]*pool
	autoLast map[string]netip.Addr // last automatic pool per family, also kept in the store
	// clusterMu orders cluster pool requests and releases with the reconcile.
	clusterMu sync.Mutex
}

type pool struct {
	rec   state.Pool
	alloc *Allocator
	// others: in a cluster pool, addresses other hosts hold (or that cool
	// down), reserved in alloc so Next skips them; not in the store.
	others map[netip.Addr]bool
}

// New loads every pool and address from the store. It costs time in
// proportion to what is allocated, not to pool sizes.
func New(cfg Config) (*Driver, error) {
	d := &Driver{store: cfg.Store, ranges: cfg.Ranges, host: cfg.Host, log: cfg.Log, onRepair: cfg.OnRepair, cluster: cfg.Cluster,
		pools: map[string]*pool{}, autoLast: map[string]netip.Addr{}}
	if d.host == nil {
		d.host = HostNetworks
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	err := d.store.View(func(tx *state.Tx) error {
		recs, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, rec := range recs {
			p, err := newPool(rec)
			if err != nil {
				return fmt.Errorf("stored pool %s: %w", rec.ID, err)
			}
			if err := tx.Addresses(rec.ID, func(a netip.Addr, _ state.Address) error {
				return p.alloc.Reserve(a)
			}); err != nil {
				return fmt.Errorf("stored pool %s: %w", rec.ID, err)
			}
			if c, ok := tx.Cursor(rec.ID); ok {
				p.alloc.SetCursor(c)
			}
			d.pools[rec.ID] = p
		}
		for _, key := range []string{"auto/v4", "auto/v6"} {
			if c, ok := tx.Cursor(key); ok {
				d.autoLast[key] = c
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load IPAM state: %w", err)
	}
	return d, nil
}

func newPool(rec state.Pool) (*pool, error) {
	rng := rec.Range
	if !rng.IsValid() {
		rng = rec.Pool
	}
	a, err := NewAllocator(rec.Pool, rng)
	if err != nil {
		return nil, err
	}
	return &pool{rec: rec, alloc: a, others: map[netip.Addr]bool{}}, nil
}

// Capabilities says we persist (no replay wanted) and need no MAC.
type Capabilities struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

// GetCapabilities answers IpamDriver.GetCapabilities.
func (d *Driver) GetCapabilities() Capabilities { return Capabilities{} }

// AddressSpaces answers IpamDriver.GetDefaultAddressSpaces.
type AddressSpaces struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

// GetDefaultAddressSpaces answers IpamDriver.GetDefaultAddressSpaces.
func (d *Driver) GetDefaultAddressSpaces() AddressSpaces {
	return AddressSpaces{LocalSpace, GlobalSpace}
}

// PoolRequest is IpamDriver.RequestPool's request.
type PoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

// PoolResponse is IpamDriver.RequestPool's response.
type PoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}

// RequestPool registers an explicit pool or picks an automatic one.
func (d *Driver) RequestPool(req PoolRequest) (PoolResponse, error) {
	space := req.AddressSpace
	if space == "" {
		space = LocalSpace
	}
	if strings.Contains(space, "/") {
		return PoolResponse{}, protocol.BadRequest("address space %q must not contain '/'", space)
	}
	if name, ok := req.Options[OptNetwork]; ok {
		return d.requestClusterPool(req, space, name)
	}
	family := familyName(req.V6)
	var rng netip.Prefix
	if req.SubPool != "" {
		if req.Pool == "" {
			return PoolResponse{}, protocol.BadRequest("ip-range %s given without a subnet: give --subnet too", req.SubPool)
		}
		var err error
		if rng, err = parseNetwork("ip-range", req.SubPool); err != nil {
			return PoolResponse{}, err
		}
	}
	rec := state.Pool{AddressSpace: space, V6: req.V6, Options: req.Options, Created: time.Now().UTC()}
	if req.Pool == "" {
		return d.requestAutomatic(rec)
	}
	p, err := parseNetwork("subnet", req.Pool)
	if err != nil {
		return PoolResponse{}, err
	}
	if p.Addr().Is6() != req.V6 {
		return PoolResponse{}, protocol.BadRequest("subnet %s is not an %s subnet", p, family)
	}
	rec.Pool = p
	if rng.IsValid() {
		if rng.Addr().Is6() != rec.Pool.Addr().Is6() || rng.Bits() < rec.Pool.Bits() || !rec.Pool.Contains(rng.Addr()) {
			return PoolResponse{}, protocol.BadRequest("ip-range %s is not inside subnet %s", rng, rec.Pool)
		}
		rec.Range = rng
	}
	rec.ID = poolID(space, rec.Pool, rec.Range)
	pl, err := newPool(rec)
	if err != nil {
		return PoolResponse{}, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}

	d.mu.Lock()
	if other := d.overlapping(rec.Pool); other != nil {
		d.mu.Unlock()
		return PoolResponse{}, protocol.BadRequest("subnet %s overlaps subnet %s already used by another mynet network (pool %s): choose a subnet that does not overlap",
			rec.Pool, other.rec.Pool, other.rec.ID)
	}
	d.pools[rec.ID] = pl // claimed now, so a concurrent request cannot take it
	d.mu.Unlock()
	return d.savePool(rec, "")
}

// requestAutomatic picks a free pool from the default ranges and claims it
// under the same lock, so requests arriving together each get their own.
func (d *Driver) requestAutomatic(rec state.Pool) (PoolResponse, error) {
	avoid, err := d.host()
	if err != nil {
		return PoolResponse{}, fmt.Errorf("list host routes to choose a free pool: %w", err)
	}
	d.mu.Lock()
	cand, key, err := d.pickAutomatic(rec.V6, avoid)
	if err != nil {
		d.mu.Unlock()
		return PoolResponse{}, err
	}
	rec.Pool, rec.Automatic = cand, true
	rec.ID = poolID(rec.AddressSpace, rec.Pool, rec.Range)
	p, err := newPool(rec)
	if err != nil {
		d.mu.Unlock()
		return PoolResponse{}, fmt.Errorf("automatic pool %s: %w", cand, err)
	}
	d.pools[rec.ID] = p
	d.autoLast[key] = cand.Addr()
	d.mu.Unlock()
	return d.savePool(rec, key)
}

// savePool makes a claimed pool durable, or unclaims it.
func (d *Driver) savePool(rec state.Pool, autoCursor string) (PoolResponse, error) {
	err := d.store.Update(func(tx *state.Tx) error {
		if err := tx.PutPool(rec); err != nil {
			return err
		}
		if autoCursor != "" {
			// The newest pick, not this one: concurrent saves may commit out of order.
			d.mu.Lock()
			last := d.autoLast[autoCursor]
			d.mu.Unlock()
			return tx.PutCursor(autoCursor, last)
		}
		return nil
	})
	if err != nil {
		d.mu.Lock()
		delete(d.pools, rec.ID)
		d.mu.Unlock()
		return PoolResponse{}, fmt.Errorf("save pool %s: %w", rec.Pool, err)
	}
	return PoolResponse{PoolID: rec.ID, Pool: rec.Pool.String(), Data: map[string]string{}}, nil
}

func poolID(space string, p, rng netip.Prefix) string {
	id := space + "/" + p.String()
	if rng.IsValid() {
		id += "/" + rng.String()
	}
	return id
}

func parseNetwork(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, protocol.BadRequest("%s %q is not a CIDR prefix (want e.g. 10.50.0.0/24 or fd00:50::/64)", what, s)
	}
	if p != p.Masked() {
		return p, protocol.BadRequest("%s %s is not in network form: use %s", what, p, p.Masked())
	}
	return p, nil
}

// overlapping returns a pool of ours that overlaps p. Callers hold d.mu.
func (d *Driver) overlapping(p netip.Prefix) *pool {
	for _, other := range d.pools {
		if other.rec.Pool.Overlaps(p) {
			return other
		}
	}
	return nil
}

// pickAutomatic cuts the next free pool from the default ranges, starting
// after the last one handed out (so consecutive requests never get the same
// pool, which Docker needs when it rejects one and asks again). Callers hold
// d.mu and claim the pool before releasing it.
func (d *Driver) pickAutomatic(v6 bool, avoid []netip.Prefix) (netip.Prefix, string, error) {
	key := "auto/v4"
	if v6 {
		key = "auto/v6"
	}
	var ranges []Range
	for _, r := range d.ranges {
		if r.Base.Addr().Is6() == v6 {
			ranges = append(ranges, r)
		}
	}
	if len(ranges) == 0 {
		return netip.Prefix{}, "", protocol.BadRequest("no default %s pool range is configured: give --subnet, or add one with --default-pools", map[bool]string{false: "IPv4", true: "IPv6"}[v6])
	}
	last := d.autoLast[key]
	// Visit every candidate once, beginning just after the last pool handed out.
	startRange, startIdx := 0, uint64(0)
	for i, r := range ranges {
		if last.IsValid() && r.Base.Contains(last) {
			startRange, startIdx = i, r.index(netip.PrefixFrom(last, r.Size).Masked())+1
		}
	}
	const maxVisits = 1 << 20 // bounds the search in huge IPv6 ranges
	visits := 0
	for k := 0; k <= len(ranges); k++ {
		ri := (startRange + k) % len(ranges)
		r := ranges[ri]
		i := uint64(0)
		if k == 0 {
			i = startIdx
		}
		end := r.count()
		if k == len(ranges) { // wrapped back to the first range: finish its head
			end = startIdx
		}
		for ; i < end && visits < maxVisits; i++ {
			visits++
			cand, ok := r.nth(i)
			if !ok {
				break
			}
			if d.overlapping(cand) != nil || overlapsAny(cand, avoid) {
				continue
			}
			return cand, key, nil
		}
	}
	var names []string
	for _, r := range ranges {
		names = append(names, r.String())
	}
	return netip.Prefix{}, "", fmt.Errorf("no free pool left in the default ranges %s: every pool overlaps a mynet network, a host route or a host address; remove networks, or give --subnet or more --default-pools", strings.Join(names, ","))
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// familyName is how messages name an address family.
func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// clusterPool is a pool of cluster network name on this host, if any; d.mu
// is held.
func (d *Driver) clusterPool(name string) *pool {
	if name == "" {
		return nil
	}
	for _, p := range d.pools {
		if p.rec.Cluster == name {
			return p
		}
	}
	return nil
}

// ReleasePool forgets a pool and its addresses. Unknown ids succeed.
func (d *Driver) ReleasePool(id string) error {
	d.mu.Lock()
	p, ok := d.pools[id]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	if p.rec.Cluster != "" {
		d.clusterMu.Lock()
		defer d.clusterMu.Unlock()
	}
	// Durable first: a pool forgotten on disk but still in memory only blocks
	// reuse until the call returns; the reverse could hand it out twice.
	if err := d.store.Update(func(tx *state.Tx) error { return tx.DeletePool(id) }); err != nil {
		return fmt.Errorf("release pool %s: %w", id, err)
	}
	d.mu.Lock()
	delete(d.pools, id)
	sibling := d.clusterPool(p.rec.Cluster) != nil
	d.mu.Unlock()
	if p.rec.Cluster != "" && !sibling {
		// This host leaves with its last pool of the network (Docker releases
		// the IPv4 and the IPv6 pool one by one); the last host to leave
		// releases the network. If etcd does not answer, the reconcile
		// leaves later (no local pool, a member).
		ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
		defer cancel()
		if err := d.cluster.Leave(ctx, p.rec.Cluster); err != nil {
			return fmt.Errorf("release pool %s: %w", id, err)
		}
	}
	return nil
}

// AddressRequest is IpamDriver.RequestAddress's request.
type AddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

// AddressResponse is IpamDriver.RequestAddress's response.
type AddressResponse struct {
	Address string
	Data    map[string]string
}

// RequestAddress hands out a specific address, the gateway, or the next free one.
func (d *Driver) RequestAddress(req AddressRequest) (AddressResponse, error) {
	var want netip.Addr
	if req.Address != "" {
		a, err := parseAddr(req.Address)
		if err != nil {
			return AddressResponse{}, err
		}
		want = a
	}
	gateway := req.Options[optRequestType] == gatewayType
	kind := state.KindEndpoint
	if gateway {
		kind = state.KindGateway
	}

	d.mu.Lock()
	p, ok := d.pools[req.PoolID]
	if !ok {
		d.mu.Unlock()
		return AddressResponse{}, unknownPool(req.PoolID)
	}
	if p.rec.Cluster != "" {
		d.mu.Unlock()
		return d.requestClusterAddress(p, want, gateway, req.Options[optMAC])
	}
	var err error
	switch {
	case want.IsValid():
		err = p.alloc.Reserve(want)
	case gateway:
		want, err = p.alloc.First()
	default:
		want, err = p.alloc.Next()
	}
	cursor := p.alloc.Cursor()
	bits := p.rec.Pool.Bits()
	d.mu.Unlock()
	if err != nil {
		if errors.Is(err, ErrPoolFull) {
			return AddressResponse{}, err
		}
		return AddressResponse{}, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}

	rec := state.Address{Kind: kind, MAC: req.Options[optMAC], Created: time.Now().UTC()}
	err = d.store.Update(func(tx *state.Tx) error {
		if err := tx.PutAddress(req.PoolID, want, rec); err != nil {
			return err
		}
		if cursor.IsValid() {
			return tx.PutCursor(req.PoolID, cursor)
		}
		return nil
	})
	if err != nil {
		d.mu.Lock()
		p.alloc.Release(want)
		d.mu.Unlock()
		return AddressResponse{}, fmt.Errorf("save address %s: %w", want, err)
	}
	return AddressResponse{Address: netip.PrefixFrom(want, bits).String(), Data: map[string]string{}}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil { // tolerate a CIDR form
		return p.Addr(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, protocol.BadRequest("address %q is not an IP address", s)
	}
	return a.Unmap(), nil
}

func unknownPool(id string) error {
	return protocol.BadRequest("unknown pool id %q: mynet has no such pool (it was released, or never allocated by mynet)", id)
}

// ReleaseAddress frees an address. Unknown pools and free addresses succeed.
func (d *Driver) ReleaseAddress(poolID, address string) error {
	a, err := parseAddr(address)
	if err != nil {
		return err
	}
	d.mu.Lock()
	p, ok := d.pools[poolID]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	// Durable first, so a crash can leak an address but never double it.
	if err := d.store.Update(func(tx *state.Tx) error { return tx.DeleteAddress(poolID, a) }); err != nil {
		return fmt.Errorf("release address %s: %w", a, err)
	}
	d.mu.Lock()
	if !p.others[a] {
		p.alloc.Release(a)
	}
	d.mu.Unlock()
	if p.rec.Cluster != "" {
		// Given back in etcd last: a crash in between leaves it held there by
		// this host, and the reconcile gives back what our records lack.
		ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
		defer cancel()
		if err := d.cluster.Release(ctx, p.rec.Cluster, a); err != nil {
			return fmt.Errorf("release address %s: %w", a, err)
		}
	}
	return nil
}

// PoolUsage describes one pool for inspection.
type PoolUsage struct {
	ID        string
	Pool      netip.Prefix
	Range     netip.Prefix
	Automatic bool
	Cluster   string // cluster network name; empty for a pool of this host only
	Used      uint64 // by this host
	Size      uint64
}

// Usage lists every pool with its use, sorted by id.
func (d *Driver) Usage() []PoolUsage {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]PoolUsage, 0, len(d.pools))
	for id, p := range d.pools {
		out = append(out, PoolUsage{ID: id, Pool: p.rec.Pool, Range: p.rec.Range, Automatic: p.rec.Automatic,
			Cluster: p.rec.Cluster, Used: p.alloc.Used() - uint64(len(p.others)), Size: p.alloc.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
