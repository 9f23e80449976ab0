package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/internal/periodic"
	"github.com/mynet/mynet/state"
)

// ClaimGrace is how old an etcd claim of this host must be before the
// reconcile gives it back for lack of a record here: a RequestAddress claims
// in etcd first and records here a moment later.
const ClaimGrace = time.Minute

// ClusterNetwork names the cluster network whose pool on this host is
// subnet, if any: the network driver sees only the subnet in CreateNetwork.
func (d *Driver) ClusterNetwork(subnet netip.Prefix) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.pools {
		if p.rec.Cluster != "" && p.rec.Pool == subnet {
			return p.rec.Cluster, true
		}
	}
	return "", false
}

// ReconcileCluster makes etcd agree with this host's records, which are the
// truth for what this host holds (see ClusterDrift), logging each repair. It
// runs at start, before the socket opens, and then periodically.
func (d *Driver) ReconcileCluster(ctx context.Context, grace time.Duration) error {
	var errs []error
	for _, dr := range d.ClusterDrift(ctx, grace, drift.FixAll) {
		switch {
		case dr.Fixed:
			d.log.Info("repaired: "+dr.Detail, "object", dr.Object)
		case dr.Error != "":
			errs = append(errs, fmt.Errorf("%s: %s: %s", dr.Object, dr.Detail, dr.Error))
		}
	}
	return errors.Join(errs...)
}

// ClusterDrift compares this host's records with etcd's and, with fix,
// repairs each difference:
//   - a cluster pool here without a membership there: join again (the
//     network is defined again with the same subnet if etcd lost it);
//   - an address recorded here but not held there: claim it again; one
//     another host holds meanwhile is reported, never taken;
//   - an address held there by this host that no record here has, claimed
//     longer than grace ago (an answer lost in a crash, a release etcd did
//     not hear of): give it back;
//   - a membership there without a pool here (a pool released while etcd was
//     away): give back what it holds there and leave.
//
// mynet doctor shows them and repairs those fix approves (nil: none); the
// reconcile repairs them all.
func (d *Driver) ClusterDrift(ctx context.Context, grace time.Duration, fix drift.Fix) []drift.Drift {
	if d.cluster == nil {
		return nil
	}
	var out []drift.Drift
	report := func(dr drift.Drift) { out = append(out, dr) }
	// Pool requests and releases wait: a pool read here as present must not
	// be joined again after its release left.
	d.clusterMu.Lock()
	defer d.clusterMu.Unlock()
	check := func(dr drift.Drift, repair func() error) { report(d.apply(dr, fix, repair)) }
	type local struct {
		rec   state.Pool
		addrs map[netip.Addr]state.Address
	}
	var pools []local
	err := d.store.View(func(tx *state.Tx) error {
		recs, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Cluster == "" {
				continue
			}
			l := local{rec: rec, addrs: map[netip.Addr]state.Address{}}
			if err := tx.Addresses(rec.ID, func(a netip.Addr, r state.Address) error { l.addrs[a] = r; return nil }); err != nil {
				return err
			}
			pools = append(pools, l)
		}
		return nil
	})
	if err != nil {
		report(drift.Drift{Kind: drift.ClusterMembership, Object: "store", Error: "read cluster pools: " + err.Error()})
		return out
	}
	us := d.cluster.HostID()
	// A cluster network may have two pools here, its IPv4 and its IPv6 one:
	// they are compared with etcd together.
	var names []string
	byName := map[string][]local{}
	for _, l := range pools {
		if byName[l.rec.Cluster] == nil {
			names = append(names, l.rec.Cluster)
		}
		byName[l.rec.Cluster] = append(byName[l.rec.Cluster], l)
	}
	have := map[string]bool{}
	for _, name := range names {
		group := byName[name]
		have[name] = true
		n, _, err := d.cluster.Network(ctx, name)
		if err != nil && !errors.Is(err, cluster.ErrNoNetwork) {
			report(drift.Drift{Kind: drift.ClusterMembership, Object: "cluster network " + name, Error: err.Error()})
			continue
		}
		joined := true
		for _, l := range group {
			if _, member := n.Members[us]; member && n.SubnetOf(l.rec.V6).IsValid() {
				continue
			}
			what := "this host has its pool " + l.rec.ID + " but is not a member in etcd"
			switch {
			case n.Name == "": // ErrNoNetwork, and no join has made it again yet
				what = "this host has its pool " + l.rec.ID + " but etcd has no such network"
			case !n.SubnetOf(l.rec.V6).IsValid():
				what = "this host has its pool " + l.rec.ID + " but the network has no " + familyName(l.rec.V6) + " pool in etcd"
			}
			opts := maps.Clone(l.rec.Options)
			delete(opts, OptNetwork)
			check(drift.Drift{Kind: drift.ClusterMembership, Object: "cluster network " + name, Detail: what + ": join again"}, func() error {
				joinedNet, _, err := d.cluster.Join(ctx, cluster.PoolSpec{Name: name, V6: l.rec.V6, Subnet: l.rec.Pool, Range: l.rec.Range, Options: opts})
				if err == nil {
					n = joinedNet
				}
				return err
			})
			if _, member := n.Members[us]; !member || !n.SubnetOf(l.rec.V6).IsValid() {
				joined = false
			}
		}
		if !joined {
			continue // not repaired: the rest compares with a membership that is not there
		}
		held, err := d.cluster.Addresses(ctx, name)
		if err != nil {
			report(drift.Drift{Kind: drift.ClusterAddress, Object: "cluster network " + name, Error: err.Error()})
			continue
		}
		mine := map[netip.Addr]state.Address{}
		for _, l := range group {
			maps.Copy(mine, l.addrs)
			for a, r := range l.addrs {
				kind := cluster.KindEndpoint
				if r.Kind == state.KindGateway {
					kind = cluster.KindGateway
				}
				if h, ok := held[a]; ok && h.Released.IsZero() && h.Kind == kind && (h.Host == us || kind == cluster.KindGateway) {
					continue
				}
				dr := drift.Drift{Kind: drift.ClusterAddress, Object: "address " + a.String(),
					Detail: fmt.Sprintf("recorded on this host (pool %s) but not held by it in etcd: claim it again", l.rec.ID)}
				if h, ok := held[a]; ok && h.Released.IsZero() && h.Host != us && h.Host != "" {
					dr.Detail = fmt.Sprintf("recorded on this host (pool %s) but held by host %s in etcd", l.rec.ID, h.Host)
					dr.Error = "not repairable here: one of the two hosts must release it (docker rm the container using it)"
					report(dr)
					continue
				}
				check(dr, func() error {
					if kind == cluster.KindGateway && !n.GatewayOf(a.Is6()).IsValid() {
						if _, err := d.cluster.SetGateway(ctx, name, a); err != nil {
							return err
						}
					}
					_, err := d.cluster.Reassert(ctx, name, a, kind)
					return err
				})
			}
		}
		d.giveBackUnrecorded(ctx, name, held, mine, grace, check)
		for _, l := range group {
			d.mu.Lock()
			p := d.pools[l.rec.ID]
			d.mu.Unlock()
			if p != nil && fix != nil {
				d.learnCluster(ctx, p)
			}
		}
	}

	nets, err := d.cluster.Networks(ctx)
	if err != nil {
		report(drift.Drift{Kind: drift.ClusterMembership, Object: "etcd", Error: err.Error()})
		return out
	}
	for _, n := range nets {
		if _, member := n.Members[us]; !member || have[n.Name] {
			continue
		}
		held, err := d.cluster.Addresses(ctx, n.Name)
		if err != nil {
			report(drift.Drift{Kind: drift.ClusterAddress, Object: "cluster network " + n.Name, Error: err.Error()})
			continue
		}
		d.giveBackUnrecorded(ctx, n.Name, held, nil, grace, check)
		check(drift.Drift{Kind: drift.ClusterMembership, Object: "cluster network " + n.Name,
			Detail: "a member in etcd but no pool of it on this host: leave"}, func() error { return d.cluster.Leave(ctx, n.Name) })
	}
	return out
}

// giveBackUnrecorded: addresses etcd says this host holds in name that mine
// lacks, claimed before grace.
func (d *Driver) giveBackUnrecorded(ctx context.Context, name string, held map[netip.Addr]cluster.Address, mine map[netip.Addr]state.Address,
	grace time.Duration, check func(drift.Drift, func() error)) {
	for a, h := range held {
		if h.Host != d.cluster.HostID() || !h.Released.IsZero() || time.Since(h.Claimed) < grace {
			continue
		}
		if _, ok := mine[a]; ok {
			continue
		}
		check(drift.Drift{Kind: drift.ClusterAddress, Object: "address " + a.String(),
			Detail: fmt.Sprintf("held by this host in etcd (cluster network %s) but recorded nowhere here: give it back", name)},
			func() error { return d.cluster.Release(ctx, name, a) })
	}
}

// RunCluster reconciles every interval, and as soon as etcd is back after an
// outage, until ctx ends (see ReconcileCluster).
func (d *Driver) RunCluster(ctx context.Context, interval time.Duration) {
	if d.cluster == nil {
		return
	}
	periodic.RunWoken(ctx, interval, d.cluster.Reconnected(ctx), func() {
		rctx, cancel := context.WithTimeout(ctx, clusterOp)
		err := d.ReconcileCluster(rctx, ClaimGrace)
		cancel()
		if err != nil {
			d.log.Warn("cluster: reconcile incomplete; trying again later", "err", err, "in", interval)
		}
	})
}
