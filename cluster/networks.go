package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// VNIs handed out to cluster networks: Docker's overlay uses the same range
// in its key-value store mode, below it VNIs are left to people's own tunnels.
const (
	FirstVNI = 4096
	LastVNI  = 1<<24 - 1
)

// PoolSpec is the IPAM half of a cluster network, as one host asks for it:
// the pool of one address family (Docker asks for the IPv4 and the IPv6 pool
// of a network in two requests).
type PoolSpec struct {
	Name    string
	V6      bool              // the pool asked for is the IPv6 one
	Subnet  netip.Prefix      // zero: the network's subnet, or an automatic one for a new network
	Range   netip.Prefix      // zero: the network's range
	Options map[string]string // IPAM options other than network=; must match the network's
	// Pick chooses an automatic subnet of the spec's family for a new pool,
	// avoiding taken.
	Pick func(taken []netip.Prefix) (netip.Prefix, error)
}

// Join makes this host a member of the cluster network spec.Name, defining
// the network if it does not exist yet, or its pool of spec's family if the
// network has none of that family and no host's network driver has defined
// it yet (the second request of the host that creates the network). A host
// that is a member already joins again without change. The answer is the
// network as stored, and whether this call made the host a member (the
// caller undoes exactly that with Leave when its own next step fails).
func (c *Client) Join(ctx context.Context, spec PoolSpec) (Network, bool, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if err := CheckName(spec.Name); err != nil {
		return Network{}, false, err
	}
	for _, p := range []netip.Prefix{spec.Subnet, spec.Range} {
		if p.IsValid() && p.Addr().Is6() != spec.V6 {
			return Network{}, false, fmt.Errorf("%w: %s is not an %s prefix", ErrInvalid, p, familyName(spec.V6))
		}
	}
	if spec.Range.IsValid() && spec.Subnet.IsValid() && (spec.Range.Bits() < spec.Subnet.Bits() || !spec.Subnet.Contains(spec.Range.Addr())) {
		return Network{}, false, fmt.Errorf("%w: ip-range %s is not inside subnet %s", ErrInvalid, spec.Range, spec.Subnet)
	}
	what := "join cluster network " + spec.Name
	request := c.nonce()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		resp, err := c.txn(ctx, "get_network", nil, []clientv3.Op{
			clientv3.OpGet(c.keys.index()), clientv3.OpGet(c.keys.network(spec.Name)),
		}, nil)
		if err != nil {
			return Network{}, false, c.wrap(what, err)
		}
		idx, idxRev, err := c.decodeIndex(resp.Responses[0].GetResponseRange().Kvs)
		if err != nil {
			return Network{}, false, err
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
			n, err := decode[Network](kvs[0].Value)
			if err != nil {
				return Network{}, false, fmt.Errorf("%s: network record: %w", what, err)
			}
			if err := matchPool(n, spec); err != nil {
				return Network{}, false, err
			}
			m, member := n.Members[c.cfg.HostID]
			if member && n.SubnetOf(spec.V6).IsValid() {
				// Already a member: by an earlier call, or by this one when
				// its answer was lost (then the join time is this call's).
				return n, m.Request == request, nil
			}
			if !member {
				n.Members[c.cfg.HostID] = Member{Joined: time.Now().UTC(), Request: request}
			}
			if n.SubnetOf(spec.V6).IsValid() {
				ok, err := c.casNetwork(ctx, "join_network", n, kvs[0].ModRevision)
				if err != nil {
					// The commit may have happened: the next round reads it back,
					// finds this host a member and answers as a success.
					c.log.Warn("cluster: join may not have committed; reading back", "network", spec.Name, "err", err)
					continue
				}
				if ok {
					return n, true, nil
				}
				continue
			}
			// The network has no pool of this family yet.
			if n.Driver != nil {
				return Network{}, false, &ConflictError{Network: n.Name, Field: familyName(spec.V6) + " subnet", Existing: "",
					Requested: orAutomatic(spec.Subnet)}
			}
			if err := c.addPool(&n, spec, idx); err != nil {
				return Network{}, false, err
			}
			idx.Networks[n.Name] = n.entry()
			tr, err := c.txn(ctx, "add_pool", []clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(c.keys.index()), "=", idxRev),
				clientv3.Compare(clientv3.ModRevision(c.keys.network(n.Name)), "=", kvs[0].ModRevision),
			}, []clientv3.Op{
				clientv3.OpPut(c.keys.index(), encode(idx)),
				clientv3.OpPut(c.keys.network(n.Name), encode(n)),
			}, nil)
			if err != nil {
				c.log.Warn("cluster: pool may not have been added; reading back", "network", spec.Name, "err", err)
				continue
			}
			if tr.Succeeded {
				c.log.Info("cluster: network pool defined", "network", n.Name, "subnet", n.SubnetOf(spec.V6))
				return n, !member, nil
			}
			continue
		}

		n := Network{Name: spec.Name, Options: spec.Options,
			Members: map[string]Member{c.cfg.HostID: {Joined: time.Now().UTC(), Request: request}},
			Created: time.Now().UTC(), CreatedBy: c.cfg.HostID, Request: request}
		if err := c.addPool(&n, spec, idx); err != nil {
			return Network{}, false, err
		}
		if n.VNI, err = nextVNI(idx); err != nil {
			return Network{}, false, err
		}
		idx.Networks[n.Name] = n.entry()
		idx.LastVNI = n.VNI
		tr, err := c.txn(ctx, "create_network", []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(c.keys.index()), "=", idxRev),
			clientv3.Compare(clientv3.CreateRevision(c.keys.network(n.Name)), "=", 0),
		}, []clientv3.Op{
			clientv3.OpPut(c.keys.index(), encode(idx)),
			clientv3.OpPut(c.keys.network(n.Name), encode(n)),
		}, nil)
		if err != nil {
			c.log.Warn("cluster: network create may not have committed; reading back", "network", spec.Name, "err", err)
			continue // the next round finds our own record (Request) and joins it as a member already
		}
		if tr.Succeeded {
			c.log.Info("cluster: network defined", "network", n.Name, "subnet", n.SubnetOf(spec.V6), "vni", n.VNI)
			return n, true, nil
		}
	}
	return Network{}, false, fmt.Errorf("%s: %w", what, ErrContended)
}

func orAutomatic(p netip.Prefix) string {
	if p.IsValid() {
		return p.String()
	}
	return "(automatic)"
}

// addPool gives n the pool spec asks for: its subnet, or an automatic one,
// unless it overlaps another cluster network's.
func (c *Client) addPool(n *Network, spec PoolSpec, idx Index) error {
	var taken []netip.Prefix
	for name, e := range idx.Networks {
		if name != n.Name {
			taken = append(taken, e.Subnet, e.Subnet6)
		}
	}
	taken = append(taken, n.Subnet, n.Subnet6)
	subnet, automatic := spec.Subnet, false
	if !subnet.IsValid() {
		if spec.Range.IsValid() {
			return fmt.Errorf("%w: ip-range %s given without a subnet for new cluster network %s: give --subnet too", ErrInvalid, spec.Range, spec.Name)
		}
		if spec.Pick == nil {
			return fmt.Errorf("%w: new cluster network %s needs an %s subnet", ErrInvalid, spec.Name, familyName(spec.V6))
		}
		valid := taken[:0:0]
		for _, p := range taken {
			if p.IsValid() {
				valid = append(valid, p)
			}
		}
		p, err := spec.Pick(valid)
		if err != nil {
			return fmt.Errorf("choose a subnet for new cluster network %s: %w", spec.Name, err)
		}
		subnet, automatic = p, true
	}
	names := make([]string, 0, len(idx.Networks))
	for name := range idx.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == n.Name {
			continue
		}
		if s, ok := idx.Networks[name].overlaps(subnet); ok {
			return fmt.Errorf("%w: subnet %s overlaps subnet %s of cluster network %s: choose a subnet that does not overlap",
				ErrConflict, subnet, s, name)
		}
	}
	n.setPool(spec.V6, subnet, spec.Range, automatic)
	return nil
}

// nextVNI is the first VNI after the last one handed out that no network
// uses: a VNI just freed is not given out again at once.
func nextVNI(idx Index) (uint32, error) {
	used := map[uint32]bool{}
	for _, e := range idx.Networks {
		used[e.VNI] = true
	}
	v := idx.LastVNI
	for range LastVNI - FirstVNI + 1 {
		v++
		if v < FirstVNI || v > LastVNI {
			v = FirstVNI
		}
		if !used[v] {
			return v, nil
		}
	}
	return 0, fmt.Errorf("every VNI from %d to %d is in use", FirstVNI, LastVNI)
}

// matchPool refuses a request that differs from the stored definition. A
// pool of the request's family that the network lacks is not a difference
// here (Join decides whether it may be added).
func matchPool(n Network, spec PoolSpec) error {
	if have := n.SubnetOf(spec.V6); have.IsValid() {
		label := ""
		if spec.V6 {
			label = "IPv6 "
		}
		if spec.Subnet.IsValid() && spec.Subnet != have {
			return &ConflictError{Network: n.Name, Field: label + "subnet", Existing: have.String(), Requested: spec.Subnet.String()}
		}
		if spec.Range.IsValid() && spec.Range != n.RangeOf(spec.V6) {
			return &ConflictError{Network: n.Name, Field: label + "ip-range", Existing: prefixText(n.RangeOf(spec.V6)), Requested: spec.Range.String()}
		}
	}
	return matchOptions(n.Name, "ipam-opt ", n.Options, spec.Options)
}

// matchOptions names the first key whose value differs (keys sorted).
func matchOptions(network, label string, have, want map[string]string) error {
	keys := map[string]bool{}
	for k := range have {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if have[k] != want[k] {
			return &ConflictError{Network: network, Field: label + k, Existing: have[k], Requested: want[k]}
		}
	}
	return nil
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// Define sets the network-driver half of a cluster network (backend and its
// options) the first time a host's network driver creates it, and refuses a
// later host that asks for something else. dockerNetwork is the id Docker
// gave the network on this host. This host must have joined.
func (c *Client) Define(ctx context.Context, name string, drv Driver, dockerNetwork string) (Network, error) {
	return c.updateNetwork(ctx, name, "define_network", "define cluster network "+name, func(n *Network) (bool, error) {
		m, ok := n.Members[c.cfg.HostID]
		if !ok {
			return false, fmt.Errorf("%w: this host is not a member of cluster network %s (its pool was released)", ErrInvalid, name)
		}
		if n.Driver != nil {
			if n.Driver.Backend != drv.Backend {
				return false, &ConflictError{Network: name, Field: "backend", Existing: n.Driver.Backend, Requested: drv.Backend}
			}
			if err := matchOptions(name, "option ", n.Driver.Options, drv.Options); err != nil {
				return false, err
			}
			if m.DockerNetwork == dockerNetwork {
				return false, nil
			}
		} else {
			d := Driver{Backend: drv.Backend, Options: maps.Clone(drv.Options)}
			n.Driver = &d
		}
		m.DockerNetwork = dockerNetwork
		n.Members[c.cfg.HostID] = m
		return true, nil
	})
}

// SetGateway records gw as the gateway every host of the network uses in
// gw's address family, unless one is set already: the answer is the network's gateway either way. The
// caller holds gw as a KindGateway address (Claim) and releases it if another
// gateway came back.
func (c *Client) SetGateway(ctx context.Context, name string, gw netip.Addr) (netip.Addr, error) {
	n, err := c.updateNetwork(ctx, name, "set_gateway", "set the gateway of cluster network "+name, func(n *Network) (bool, error) {
		if n.GatewayOf(gw.Is6()).IsValid() {
			return false, nil
		}
		if gw.Is6() {
			n.Gateway6 = gw
		} else {
			n.Gateway = gw
		}
		return true, nil
	})
	return n.GatewayOf(gw.Is6()), err
}

// updateNetwork reads the network name and lets change edit it: change says
// whether to write the result back, or why the update is refused. A write
// that loses to another host's is retried on a fresh read. It returns the
// network as read, or as written.
func (c *Client) updateNetwork(ctx context.Context, name, op, what string, change func(*Network) (write bool, err error)) (Network, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n, rev, err := c.Network(ctx, name)
		if err != nil {
			return Network{}, err
		}
		write, err := change(&n)
		if err != nil {
			return Network{}, err
		}
		if !write {
			return n, nil
		}
		ok, err := c.casNetwork(ctx, op, n, rev)
		if err == nil && ok {
			return n, nil
		}
		// an error leaves the outcome unknown: re-read, an ambiguous commit shows up as done
	}
	return Network{}, fmt.Errorf("%s: %w", what, ErrContended)
}

// Leave ends this host's membership of a cluster network. The last member to
// leave removes the network, its index entry (subnet and VNI become free) and
// every address and endpoint record it had. Leaving a network one is not a
// member of, or that does not exist, succeeds.
func (c *Client) Leave(ctx context.Context, name string) error {
	return c.leave(ctx, name, c.cfg.HostID)
}

func (c *Client) leave(ctx context.Context, name, host string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	what := "leave cluster network " + name
	for attempt := 0; attempt < maxAttempts; attempt++ {
		resp, err := c.txn(ctx, "get_network", nil, []clientv3.Op{
			clientv3.OpGet(c.keys.index()), clientv3.OpGet(c.keys.network(name)),
		}, nil)
		if err != nil {
			return c.wrap(what, err)
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil
		}
		n, err := decode[Network](kvs[0].Value)
		if err != nil {
			return fmt.Errorf("%s: network record: %w", what, err)
		}
		if _, ok := n.Members[host]; !ok {
			return nil
		}
		delete(n.Members, host)
		if len(n.Members) > 0 {
			if ok, err := c.casNetwork(ctx, "leave_network", n, kvs[0].ModRevision); err == nil && ok {
				return nil
			}
			continue
		}
		idx, idxRev, err := c.decodeIndex(resp.Responses[0].GetResponseRange().Kvs)
		if err != nil {
			return err
		}
		delete(idx.Networks, name)
		tr, err := c.txn(ctx, "delete_network", []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(c.keys.index()), "=", idxRev),
			clientv3.Compare(clientv3.ModRevision(c.keys.network(name)), "=", kvs[0].ModRevision),
		}, []clientv3.Op{
			clientv3.OpPut(c.keys.index(), encode(idx)),
			clientv3.OpDelete(c.keys.network(name)),
			clientv3.OpDelete(c.keys.addrs(name), clientv3.WithPrefix()),
			clientv3.OpDelete(c.keys.endpoints(name), clientv3.WithPrefix()),
		}, nil)
		if err == nil && tr.Succeeded {
			c.log.Info("cluster: network removed (last member left)", "network", name, "subnet", n.Subnet, "vni", n.VNI)
			return nil
		}
	}
	return fmt.Errorf("%s: %w", what, ErrContended)
}

// Network reads one cluster network and its revision.
func (c *Client) Network(ctx context.Context, name string) (Network, int64, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.get(ctx, "get_network", c.keys.network(name))
	if err != nil {
		return Network{}, 0, c.wrap("read cluster network "+name, err)
	}
	if len(resp.Kvs) == 0 {
		return Network{}, 0, fmt.Errorf("%w: %s", ErrNoNetwork, name)
	}
	n, err := decode[Network](resp.Kvs[0].Value)
	if err != nil {
		return Network{}, 0, fmt.Errorf("cluster network %s: record: %w", name, err)
	}
	if n.Members == nil {
		n.Members = map[string]Member{}
	}
	return n, resp.Kvs[0].ModRevision, nil
}

// Networks lists every cluster network, sorted by name.
func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	out, err := list[Network](ctx, c, "list_networks", c.keys.networks(), "list cluster networks", "network record")
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// casNetwork writes n if its record is still at rev. An error means the
// outcome is unknown: the caller reads again.
func (c *Client) casNetwork(ctx context.Context, op string, n Network, rev int64) (bool, error) {
	resp, err := c.txn(ctx, op, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(c.keys.network(n.Name)), "=", rev)},
		[]clientv3.Op{clientv3.OpPut(c.keys.network(n.Name), encode(n))}, nil)
	if err != nil {
		return false, c.wrap(strings.ReplaceAll(op, "_", " ")+" "+n.Name, err)
	}
	return resp.Succeeded, nil
}

func (c *Client) decodeIndex(kvs []*mvccpb.KeyValue) (Index, int64, error) {
	idx := Index{Networks: map[string]IndexEntry{}}
	if len(kvs) == 0 {
		return idx, 0, nil
	}
	if err := json.Unmarshal(kvs[0].Value, &idx); err != nil {
		return idx, 0, fmt.Errorf("cluster index record: %w", err)
	}
	if idx.Networks == nil {
		idx.Networks = map[string]IndexEntry{}
	}
	return idx, kvs[0].ModRevision, nil
}
