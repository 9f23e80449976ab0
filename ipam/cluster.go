package ipam

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// OptNetwork is the IPAM option that makes a pool cluster-wide: every host
// that creates a network with --ipam-opt network=NAME shares NAME's subnet,
// and no address is handed out twice across hosts.
const OptNetwork = "network"

// clusterPoolPrefix starts the pool id of a cluster pool:
// cluster/NAME/SUBNET[/RANGE].
const clusterPoolPrefix = "cluster/"

// clusterOp bounds one IPAM call's work in etcd; the client's own timeout
// bounds each part, this only keeps a retry loop from running on.
const clusterOp = 30 * time.Second

// maxClaims bounds how many candidates one RequestAddress tries in etcd.
// Each failed one is an address another host holds, learned for next time.
const maxClaims = 256

func clusterPoolID(name string, p, rng netip.Prefix) string {
	id := clusterPoolPrefix + name + "/" + p.String()
	if rng.IsValid() {
		id += "/" + rng.String()
	}
	return id
}

// clusterError turns a cluster error into this package's: the request's fault
// (a conflict, an invalid name, an address in use) is a bad request; etcd not
// answering is not, and its message names etcd already.
func clusterError(err error) error {
	if errors.Is(err, cluster.ErrConflict) || errors.Is(err, cluster.ErrInvalid) ||
		errors.Is(err, cluster.ErrTaken) || errors.Is(err, cluster.ErrNoNetwork) {
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	return err
}

// requestClusterPool joins (or defines) the cluster network name and
// registers its pool on this host.
func (d *Driver) requestClusterPool(req PoolRequest, space, name string) (PoolResponse, error) {
	if d.cluster == nil {
		return PoolResponse{}, protocol.BadRequest("--ipam-opt %s=%s asks for a cluster network, but this mynet was started without --cluster: start it with --cluster etcd://HOST:2379 (env MYNET_CLUSTER), or drop --ipam-opt %s for a network of this host only",
			OptNetwork, name, OptNetwork)
	}
	if err := cluster.CheckName(name); err != nil {
		return PoolResponse{}, clusterError(err)
	}
	spec := cluster.PoolSpec{Name: name, V6: req.V6, Options: map[string]string{}}
	for k, v := range req.Options {
		if k != OptNetwork {
			spec.Options[k] = v
		}
	}
	var err error
	if req.Pool != "" {
		if spec.Subnet, err = parseNetwork("subnet", req.Pool); err != nil {
			return PoolResponse{}, err
		}
		if spec.Subnet.Addr().Is6() != req.V6 {
			return PoolResponse{}, protocol.BadRequest("subnet %s is not an %s subnet", spec.Subnet, familyName(req.V6))
		}
	}
	if req.SubPool != "" {
		if req.Pool == "" {
			return PoolResponse{}, protocol.BadRequest("ip-range %s given without a subnet: give --subnet too", req.SubPool)
		}
		if spec.Range, err = parseNetwork("ip-range", req.SubPool); err != nil {
			return PoolResponse{}, err
		}
	}
	spec.Pick = func(taken []netip.Prefix) (netip.Prefix, error) {
		avoid, err := d.host()
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("list host routes to choose a free pool: %w", err)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		p, _, err := d.pickAutomatic(req.V6, append(avoid, taken...))
		return p, err
	}
	d.clusterMu.Lock()
	defer d.clusterMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
	defer cancel()
	n, joined, err := d.cluster.Join(ctx, spec)
	if err != nil {
		return PoolResponse{}, clusterError(err)
	}
	leave := func() {
		if joined {
			if err := d.cluster.Leave(ctx, name); err != nil {
				d.log.Warn("cluster: could not undo a join; the next reconcile leaves", "network", name, "err", err)
			}
		}
	}

	subnet, rng := n.SubnetOf(req.V6), n.RangeOf(req.V6)
	rec := state.Pool{ID: clusterPoolID(name, subnet, rng), Cluster: name, AddressSpace: space, V6: req.V6,
		Pool: subnet, Range: rng, Automatic: n.Automatic, Options: req.Options, Created: time.Now().UTC()}
	if req.V6 {
		rec.Automatic = n.Automatic6
	}
	p, err := newPool(rec)
	if err != nil {
		leave()
		return PoolResponse{}, fmt.Errorf("%w: cluster network %s: %v", protocol.ErrBadRequest, name, err)
	}
	p.alloc.SetCursor(hostOffset(p.alloc, d.cluster.HostID()))
	d.mu.Lock()
	if other := d.overlapping(rec.Pool); other != nil {
		d.mu.Unlock()
		leave()
		if other.rec.Cluster == name {
			return PoolResponse{}, protocol.BadRequest("cluster network %s already has a network on this host (pool %s): one Docker network per cluster network and host", name, other.rec.ID)
		}
		return PoolResponse{}, protocol.BadRequest("cluster network %s has subnet %s, which overlaps subnet %s already used by another mynet network on this host (pool %s)",
			name, rec.Pool, other.rec.Pool, other.rec.ID)
	}
	d.pools[rec.ID] = p
	d.mu.Unlock()
	if err := d.store.Update(func(tx *state.Tx) error { return tx.PutPool(rec) }); err != nil {
		d.mu.Lock()
		delete(d.pools, rec.ID)
		d.mu.Unlock()
		leave()
		return PoolResponse{}, fmt.Errorf("save pool %s: %w", rec.ID, err)
	}
	d.learnCluster(ctx, p) // fewer collisions from the first address on; a failure only costs retries
	return PoolResponse{PoolID: rec.ID, Pool: rec.Pool.String(), Data: map[string]string{}}, nil
}

// spreadWindow bounds hostOffset's spread.
const spreadWindow = 1 << 16

// hostOffset is where a host's next-fit search starts in a cluster pool:
// spread by host id, so hosts allocating at once rarely try the same address.
// The spread stays within the first spreadWindow addresses, so that an IPv6
// /64 hands out fd00::1:2 rather than fd00::8f3a:1b2c:77d0:12.
func hostOffset(a *Allocator, host string) netip.Addr {
	h := fnv.New64a()
	h.Write([]byte(host))
	size := min(a.Size(), spreadWindow)
	if size == 0 {
		return netip.Addr{}
	}
	off := h.Sum64() % size
	return addOffset(a.lo, off, 0)
}

// learnCluster marks every address other hosts hold (or that cools down) in
// p's allocator, and forgets what it had marked that is free again.
func (d *Driver) learnCluster(ctx context.Context, p *pool) {
	recs, err := d.cluster.Addresses(ctx, p.rec.Cluster)
	if err != nil {
		d.log.Debug("cluster: cannot read the network's addresses; claims will find them", "network", p.rec.Cluster, "err", err)
		return
	}
	now, cool := time.Now(), d.cluster.Cooldown()
	d.mu.Lock()
	defer d.mu.Unlock()
	for a := range p.others {
		if r, ok := recs[a]; !ok || r.Free(now, cool) {
			p.alloc.Release(a)
			delete(p.others, a)
		}
	}
	for a, r := range recs {
		if r.Free(now, cool) || p.others[a] || p.alloc.Taken(a) {
			continue // free, known, or ours (from our own records)
		}
		if p.alloc.Reserve(a) == nil {
			p.others[a] = true
		}
	}
}

// markOther notes that another host holds a (or it cools down).
func (d *Driver) markOther(p *pool, a netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.others[a] = true
}

// takeLocally reserves a in p for this host; an address only marked as
// another host's is taken over (the claim in etcd decides).
func (d *Driver) takeLocally(p *pool, a netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.others[a] {
		delete(p.others, a)
		return nil
	}
	return p.alloc.Reserve(a)
}

func (d *Driver) dropLocally(p *pool, a netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !p.others[a] {
		p.alloc.Release(a)
	}
}

// requestClusterAddress hands out an address of a cluster pool: claimed in
// etcd first, then recorded here.
func (d *Driver) requestClusterAddress(p *pool, want netip.Addr, gateway bool, mac string) (AddressResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
	defer cancel()
	name := p.rec.Cluster
	kind := state.KindEndpoint
	var err error
	switch {
	case gateway:
		kind = state.KindGateway
		want, err = d.clusterGateway(ctx, p, want)
	case want.IsValid():
		err = d.claimSpecific(ctx, p, want)
	default:
		want, err = d.claimNext(ctx, p)
	}
	if err != nil {
		return AddressResponse{}, err
	}
	rec := state.Address{Kind: kind, MAC: mac, Created: time.Now().UTC()}
	d.mu.Lock()
	cursor := p.alloc.Cursor()
	d.mu.Unlock()
	err = d.store.Update(func(tx *state.Tx) error {
		if err := tx.PutAddress(p.rec.ID, want, rec); err != nil {
			return err
		}
		if cursor.IsValid() {
			return tx.PutCursor(p.rec.ID, cursor)
		}
		return nil
	})
	if err != nil {
		d.dropLocally(p, want)
		if !gateway {
			if rerr := d.cluster.Release(ctx, name, want); rerr != nil {
				d.log.Warn("cluster: could not give back an address after a failed save; the next reconcile does", "network", name, "address", want, "err", rerr)
			}
		}
		return AddressResponse{}, fmt.Errorf("save address %s: %w", want, err)
	}
	return AddressResponse{Address: netip.PrefixFrom(want, p.rec.Pool.Bits()).String(), Data: map[string]string{}}, nil
}

// clusterGateway answers a gateway request: the network's gateway of the
// pool's family, the same on every host; the first host sets it (its --gateway, else the first
// address of the range).
func (d *Driver) clusterGateway(ctx context.Context, p *pool, want netip.Addr) (netip.Addr, error) {
	name := p.rec.Cluster
	n, _, err := d.cluster.Network(ctx, name)
	if err != nil {
		return netip.Addr{}, clusterError(err)
	}
	gw := n.GatewayOf(p.rec.V6)
	if !gw.IsValid() {
		cand := want
		if !cand.IsValid() {
			d.mu.Lock()
			cand, err = p.alloc.First()
			if err == nil {
				p.alloc.Release(cand) // only a proposal: held below
			}
			d.mu.Unlock()
			if err != nil {
				return netip.Addr{}, err
			}
		}
		if gw, err = d.cluster.SetGateway(ctx, name, cand); err != nil {
			return netip.Addr{}, clusterError(err)
		}
	}
	if want.IsValid() && want != gw {
		return netip.Addr{}, clusterError(&cluster.ConflictError{Network: name, Field: "gateway", Existing: gw.String(), Requested: want.String()})
	}
	if err := d.takeLocally(p, gw); err != nil && !errors.Is(err, ErrInUse) {
		return netip.Addr{}, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	if _, err := d.cluster.Claim(ctx, name, gw, cluster.KindGateway); err != nil {
		d.dropLocally(p, gw)
		return netip.Addr{}, clusterError(err)
	}
	return gw, nil
}

// claimSpecific takes one given address (--ip, an aux address).
func (d *Driver) claimSpecific(ctx context.Context, p *pool, want netip.Addr) error {
	if err := d.takeLocally(p, want); err != nil {
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	if _, err := d.cluster.Claim(ctx, p.rec.Cluster, want, cluster.KindEndpoint); err != nil {
		if errors.Is(err, cluster.ErrTaken) {
			d.markOther(p, want)
		} else {
			d.dropLocally(p, want)
		}
		return clusterError(err)
	}
	return nil
}

// claimNext takes the next address free cluster-wide: next-fit over what this
// host knows, each candidate claimed in etcd; one another host holds is
// remembered and skipped. When the pool looks full here, it learns the
// network's addresses from etcd again (some may have been released) once.
func (d *Driver) claimNext(ctx context.Context, p *pool) (netip.Addr, error) {
	relearned := false
	for tries := 0; tries < maxClaims; tries++ {
		d.mu.Lock()
		cand, err := p.alloc.Next()
		d.mu.Unlock()
		if errors.Is(err, ErrPoolFull) && !relearned {
			relearned = true
			d.learnCluster(ctx, p)
			continue
		}
		if err != nil {
			return netip.Addr{}, fmt.Errorf("cluster network %s: %w", p.rec.Cluster, err)
		}
		_, err = d.cluster.Claim(ctx, p.rec.Cluster, cand, cluster.KindEndpoint)
		if err == nil {
			return cand, nil
		}
		if errors.Is(err, cluster.ErrTaken) {
			d.markOther(p, cand)
			continue
		}
		d.dropLocally(p, cand)
		return netip.Addr{}, clusterError(err)
	}
	return netip.Addr{}, fmt.Errorf("cluster network %s: %d addresses in a row were taken by other hosts; try again", p.rec.Cluster, maxClaims)
}
