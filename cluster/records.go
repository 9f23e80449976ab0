package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// keys lays out mynet's records under one prefix:
//
//	hosts/<id>               Host, durable
//	alive/<id>               bound to the host's lease: the only leased key
//	index                    Index: every cluster network's subnet and VNI, the unit of uniqueness
//	networks/<name>          Network: definition and members
//	addrs/<name>/<ip>        Address: one handed-out (or cooling-down) address
//	endpoints/<name>/<ip>    Endpoint: where a container's address lives, for the data plane
type keys string

func (k keys) host(id string) string        { return string(k) + "hosts/" + id }
func (k keys) hosts() string                { return string(k) + "hosts/" }
func (k keys) alive(id string) string       { return string(k) + "alive/" + id }
func (k keys) alives() string               { return string(k) + "alive/" }
func (k keys) index() string                { return string(k) + "index" }
func (k keys) network(name string) string   { return string(k) + "networks/" + name }
func (k keys) networks() string             { return string(k) + "networks/" }
func (k keys) addrs(name string) string     { return string(k) + "addrs/" + name + "/" }
func (k keys) allAddrs() string             { return string(k) + "addrs/" }
func (k keys) endpoints(name string) string { return string(k) + "endpoints/" + name + "/" }
func (k keys) allEndpoints() string         { return string(k) + "endpoints/" }
func (k keys) addr(name string, a netip.Addr) string {
	return k.addrs(name) + a.String()
}
func (k keys) endpoint(name string, a netip.Addr) string {
	return k.endpoints(name) + a.String()
}

// Host is a host that joined the cluster. Durable: it outlives the lease.
type Host struct {
	ID        string     `json:"id"`
	Advertise netip.Addr `json:"advertise"`
	Joined    time.Time  `json:"joined"`
	Seen      time.Time  `json:"seen"` // last (re)registration
}

// Index holds what must be unique across cluster networks.
type Index struct {
	Networks map[string]IndexEntry `json:"networks"`
	LastVNI  uint32                `json:"last_vni,omitempty"` // VNIs are handed out next-fit
}

// IndexEntry is one network's unique parts.
type IndexEntry struct {
	Subnet  netip.Prefix `json:"subnet"`
	Subnet6 netip.Prefix `json:"subnet6,omitzero"`
	VNI     uint32       `json:"vni"`
}

// overlaps names the subnet of e that p overlaps, if any.
func (e IndexEntry) overlaps(p netip.Prefix) (netip.Prefix, bool) {
	for _, s := range []netip.Prefix{e.Subnet, e.Subnet6} {
		if s.IsValid() && s.Overlaps(p) {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

// Network is one cluster network. Its IPv4 pool (Subnet, Range, Gateway,
// Automatic) and its IPv6 pool (the same with 6) are each set by the first
// request of that family, before any host's network driver has defined the
// network; either may be absent.
type Network struct {
	Name       string            `json:"name"`
	Subnet     netip.Prefix      `json:"subnet,omitzero"`
	Range      netip.Prefix      `json:"range,omitzero"` // --ip-range; zero: the whole subnet
	Gateway    netip.Addr        `json:"gateway,omitzero"`
	Automatic  bool              `json:"automatic,omitempty"` // subnet cut from the default pools
	Subnet6    netip.Prefix      `json:"subnet6,omitzero"`
	Range6     netip.Prefix      `json:"range6,omitzero"`
	Gateway6   netip.Addr        `json:"gateway6,omitzero"`
	Automatic6 bool              `json:"automatic6,omitempty"`
	Options    map[string]string `json:"options,omitempty"` // IPAM options other than network=
	VNI        uint32            `json:"vni"`
	Driver     *Driver           `json:"driver,omitempty"` // nil until a host's network driver defines it
	Members    map[string]Member `json:"members"`
	Created    time.Time         `json:"created"`
	CreatedBy  string            `json:"created_by"` // host id
	Request    string            `json:"request,omitempty"`
}

// SubnetOf, RangeOf and GatewayOf read the pool of one address family.
func (n Network) SubnetOf(v6 bool) netip.Prefix {
	if v6 {
		return n.Subnet6
	}
	return n.Subnet
}

func (n Network) RangeOf(v6 bool) netip.Prefix {
	if v6 {
		return n.Range6
	}
	return n.Range
}

func (n Network) GatewayOf(v6 bool) netip.Addr {
	if v6 {
		return n.Gateway6
	}
	return n.Gateway
}

// setPool sets the pool of one address family.
func (n *Network) setPool(v6 bool, subnet, rng netip.Prefix, automatic bool) {
	if v6 {
		n.Subnet6, n.Range6, n.Automatic6 = subnet, rng, automatic
		return
	}
	n.Subnet, n.Range, n.Automatic = subnet, rng, automatic
}

// entry is n's line in the index.
func (n Network) entry() IndexEntry {
	return IndexEntry{Subnet: n.Subnet, Subnet6: n.Subnet6, VNI: n.VNI}
}

// familyName is how messages name an address family's pool.
func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// Driver is the network-driver half of a cluster network's definition.
type Driver struct {
	Backend string            `json:"backend"`
	Options map[string]string `json:"options,omitempty"`
}

// Member is one host's use of a cluster network.
type Member struct {
	Joined        time.Time `json:"joined"`
	Request       string    `json:"request,omitempty"`        // the call that joined`
	DockerNetwork string    `json:"docker_network,omitempty"` // the id Docker gave it on that host
}

// Address kinds.
const (
	KindGateway  = "gateway"
	KindEndpoint = "endpoint"
)

// Address is one address of a cluster network, handed out or cooling down.
type Address struct {
	Host     string    `json:"host,omitempty"` // owner; empty for the gateway every host shares
	Request  string    `json:"request"`        // the call that claimed it
	Kind     string    `json:"kind"`
	Gen      uint64    `json:"gen"` // how many times it was handed out
	Claimed  time.Time `json:"claimed"`
	Released time.Time `json:"released,omitzero"` // set: a tombstone, free after the cool-down
}

// Free says whether a tombstone may be handed out again at now.
func (a Address) Free(now time.Time, cooldown time.Duration) bool {
	return !a.Released.IsZero() && now.Sub(a.Released) >= cooldown
}

// Endpoint is a container's address as the data plane needs it.
type Endpoint struct {
	Network       string     `json:"network"`
	IP            netip.Addr `json:"ip"`
	MAC           string     `json:"mac"`
	Host          string     `json:"host"`
	VTEP          netip.Addr `json:"vtep"` // the host's advertise address when published
	DockerNetwork string     `json:"docker_network,omitempty"`
	EndpointID    string     `json:"endpoint_id,omitempty"`
	Gen           uint64     `json:"gen"` // the address's generation
	Created       time.Time  `json:"created"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// CheckName validates a cluster network name.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: cluster network name %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	return nil
}

func decode[T any](raw []byte) (T, error) {
	var v T
	err := json.Unmarshal(raw, &v)
	return v, err
}

// getRecord reads the record at key: found is false when there is none, rev
// is its ModRevision for a compare-and-swap. op names the call in the
// metrics; errors name the operation what and the record's kind.
func getRecord[T any](ctx context.Context, c *Client, op, key, what, kind string) (v T, rev int64, found bool, err error) {
	resp, err := c.get(ctx, op, key)
	if err != nil {
		return v, 0, false, c.wrap(what, err)
	}
	if len(resp.Kvs) == 0 {
		return v, 0, false, nil
	}
	if v, err = decode[T](resp.Kvs[0].Value); err != nil {
		return v, 0, false, fmt.Errorf("%s: %s record: %w", what, kind, err)
	}
	return v, resp.Kvs[0].ModRevision, true, nil
}

// updateRecord reads the record at key (getOp and kind as for getRecord) and
// asks change what to write: no record, or nothing to write, is success. The
// write, a transaction named op, happens only if the record is unchanged
// since the read; otherwise it reads again. A failed write is returned: its
// outcome is unknown, and the caller's retry reads again.
func updateRecord[T any](ctx context.Context, c *Client, getOp, op, key, what, kind string, change func(T) (clientv3.Op, bool)) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		v, rev, found, err := getRecord[T](ctx, c, getOp, key, what, kind)
		if err != nil || !found {
			return err
		}
		write, ok := change(v)
		if !ok {
			return nil
		}
		tr, err := c.txn(ctx, op, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
			[]clientv3.Op{write}, nil)
		if err != nil {
			return c.wrap(what, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", what, ErrContended)
}

// list reads and decodes every record under prefix; op names the call in
// the metrics, what the listing and kind a record in errors.
func list[T any](ctx context.Context, c *Client, op, prefix, what, kind string) ([]T, error) {
	resp, err := c.get(ctx, op, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, c.wrap(what, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := decode[T](kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own record types come here
	}
	return string(b)
}

// Errors, tested with errors.Is.
var (
	// ErrUnavailable: etcd did not answer (the message names the endpoints).
	ErrUnavailable = errors.New("etcd unavailable")
	// ErrInvalid: the request itself is wrong.
	ErrInvalid = errors.New("invalid cluster request")
	// ErrConflict: the request contradicts the cluster's definition.
	ErrConflict = errors.New("conflicts with the cluster network")
	// ErrNoNetwork: no such cluster network.
	ErrNoNetwork = errors.New("no such cluster network")
	// ErrTaken: the address is held by someone else or cooling down.
	ErrTaken = errors.New("address taken")
	// ErrAlive: the host is alive, so its records may not be forgotten.
	ErrAlive = errors.New("host is alive")
	// ErrContended: other hosts kept changing the same record.
	ErrContended = errors.New("cluster record changed under every attempt")
)

// ConflictError says which part of a definition differs.
type ConflictError struct {
	Network, Field, Existing, Requested string
}

func (e *ConflictError) Error() string {
	ex, rq := e.Existing, e.Requested
	if ex == "" {
		ex = "(none)"
	}
	if rq == "" {
		rq = "(none)"
	}
	return fmt.Sprintf("cluster network %s already exists with %s=%s; this request asks for %s=%s (create it with the same settings on every host, or pick another network name)",
		e.Network, e.Field, ex, e.Field, rq)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// TakenError says who holds an address.
type TakenError struct {
	Network string
	Addr    netip.Addr
	Held    Address
	Until   time.Time // cooling down until then; zero when held
}

func (e *TakenError) Error() string {
	if !e.Until.IsZero() {
		return fmt.Sprintf("address %s of cluster network %s was released at %s and is not handed out again before %s",
			e.Addr, e.Network, e.Held.Released.Format(time.RFC3339), e.Until.Format(time.RFC3339))
	}
	who := "host " + e.Held.Host
	if e.Held.Host == "" {
		who = "every host"
	}
	return fmt.Sprintf("address %s of cluster network %s is in use (%s, held by %s)", e.Addr, e.Network, e.Held.Kind, who)
}

func (e *TakenError) Unwrap() error { return ErrTaken }
