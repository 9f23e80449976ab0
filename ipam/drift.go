package ipam

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/state"
)

// Doctor finds pools no Docker network uses and endpoint addresses no Docker
// endpoint holds and that are not one of the network's aux addresses (an
// answer lost in a crash, a network removed while we were down) and releases
// those fix approves. Records younger than grace before the view was taken
// are left alone: Docker may be about to use them.
//
// A pool counts as used by every Docker network with its subnet and
// ip-range, whatever IPAM driver name that network gives: a managed plugin
// cannot tell which name Docker knows it by, and a wrong guess that way only
// keeps a leak, while the other way would free addresses containers hold.
func (d *Driver) Doctor(v drift.View, fix drift.Fix, grace time.Duration) []drift.Drift {
	type use struct {
		networks []string
		addrs    map[netip.Addr]bool
	}
	used := map[[2]netip.Prefix]*use{} // (subnet, ip-range) -> what Docker holds there
	for _, n := range v.Networks {
		for _, p := range n.Pools {
			k := [2]netip.Prefix{p.Subnet.Masked(), p.IPRange.Masked()}
			u := used[k]
			if u == nil {
				u = &use{addrs: map[netip.Addr]bool{}}
				used[k] = u
			}
			u.networks = append(u.networks, n.Name)
			for _, ep := range n.Endpoints {
				u.addrs[ep.IPv4], u.addrs[ep.IPv6] = true, true
			}
			// --aux-address reservations reach us as plain address
			// requests: only Docker's IPAM config says what they are.
			for _, a := range p.Aux {
				u.addrs[a] = true
			}
		}
	}

	var pools []state.Pool
	leaked := map[string][]netip.Addr{}
	err := d.store.View(func(tx *state.Tx) error {
		var err error
		if pools, err = tx.Pools(); err != nil {
			return err
		}
		for _, p := range pools {
			u, ok := used[[2]netip.Prefix{p.Pool.Masked(), p.Range.Masked()}]
			if !ok {
				continue
			}
			err := tx.Addresses(p.ID, func(a netip.Addr, rec state.Address) error {
				if rec.Kind == state.KindEndpoint && !u.addrs[a] && v.Mature(rec.Created, grace) {
					leaked[p.ID] = append(leaked[p.ID], a)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return []drift.Drift{{Kind: drift.PoolUnused, Object: "store", Error: "read pools: " + err.Error()}}
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].ID < pools[j].ID })

	var out []drift.Drift
	report := func(dr drift.Drift, repair func() error) { out = append(out, d.apply(dr, fix, repair)) }
	for _, p := range pools {
		u, ok := used[[2]netip.Prefix{p.Pool.Masked(), p.Range.Masked()}]
		if !ok {
			if v.Mature(p.Created, grace) {
				report(drift.Drift{Kind: drift.PoolUnused, Object: "pool " + p.ID,
					Detail: "no Docker network uses it: release it with its addresses"},
					func() error { return d.ReleasePool(p.ID) })
			}
			continue
		}
		sort.Strings(u.networks)
		for _, a := range leaked[p.ID] {
			report(drift.Drift{Kind: drift.AddressUnused, Object: "address " + a.String(),
				Detail: fmt.Sprintf("allocated in pool %s (network %s) but no Docker endpoint holds it", p.ID, strings.Join(u.networks, ", "))},
				func() error { return d.ReleaseAddress(p.ID, a.String()) })
		}
	}
	return out
}

// apply repairs dr as drift.Apply does and tells onRepair what it fixed.
func (d *Driver) apply(dr drift.Drift, fix drift.Fix, repair func() error) drift.Drift {
	dr = drift.Apply(dr, fix, repair)
	if dr.Fixed && d.onRepair != nil {
		d.onRepair(dr.Kind)
	}
	return dr
}
