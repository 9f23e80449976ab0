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
// truth for what this host holds:
//   - every cluster pool here is a membership there (re-joined, or the
//     network defined again with the same subnet if etcd lost it);
//   - every address recorded here is held there (claimed again if missing;
//     one another host holds meanwhile is reported, never taken);
//   - addresses held there by this host that no record here has, claimed
//     longer than grace ago, are given back (an answer lost in a crash, a
//     release etcd did not hear of);
//   - memberships there without a pool here end (a pool released while etcd
//     was away).
//
// It runs at start, before the socket opens, and then periodically.
func (d *Driver) ReconcileCluster(ctx context.Context, grace time.Duration) error {
	if d.cluster == nil {
		return nil
	}
	// Pool requests and releases wait: a pool read here as present must not
	// be joined again after its release left.
	d.clusterMu.Lock()
	defer d.clusterMu.Unlock()
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
		return fmt.Errorf("read cluster pools: %w", err)
	}
	us := d.cluster.HostID()
	var errs []error
	have := map[string]bool{}
	for _, l := range pools {
		name := l.rec.Cluster
		have[name] = true
		opts := maps.Clone(l.rec.Options)
		delete(opts, OptNetwork)
		n, joined, err := d.cluster.Join(ctx, cluster.PoolSpec{Name: name, Subnet: l.rec.Pool, Range: l.rec.Range, Options: opts})
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster network %s (pool %s here): %w", name, l.rec.ID, err))
			continue
		}
		if joined {
			d.repaired(drift.ClusterMembership, "joined again: this host has the pool", "network", name)
		}
		held, err := d.cluster.Addresses(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for a, r := range l.addrs {
			kind := cluster.KindEndpoint
			if r.Kind == state.KindGateway {
				kind = cluster.KindGateway
				if !n.Gateway.IsValid() {
					if _, err := d.cluster.SetGateway(ctx, name, a); err != nil {
						errs = append(errs, err)
					}
				}
			}
			if h, ok := held[a]; ok && h.Released.IsZero() && h.Kind == kind && (h.Host == us || kind == cluster.KindGateway) {
				continue
			}
			if _, err := d.cluster.Reassert(ctx, name, a, kind); err != nil {
				errs = append(errs, fmt.Errorf("address %s of cluster network %s is recorded on this host but not held in etcd, and cannot be claimed again: %w", a, name, err))
				continue
			}
			d.repaired(drift.ClusterAddress, "held again in etcd: this host records it", "network", name, "address", a)
		}
		errs = append(errs, d.giveBackUnrecorded(ctx, name, held, l.addrs, grace)...)
		d.mu.Lock()
		p := d.pools[l.rec.ID]
		d.mu.Unlock()
		if p != nil {
			d.learnCluster(ctx, p)
		}
	}

	nets, err := d.cluster.Networks(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range nets {
		if _, member := n.Members[us]; !member || have[n.Name] {
			continue
		}
		// No pool here: give back what this host still holds, then leave.
		held, err := d.cluster.Addresses(ctx, n.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, d.giveBackUnrecorded(ctx, n.Name, held, nil, grace)...)
		if err := d.cluster.Leave(ctx, n.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		d.repaired(drift.ClusterMembership, "left: no pool of it on this host", "network", n.Name)
	}
	return errors.Join(errs...)
}

// giveBackUnrecorded releases addresses etcd says this host holds in name but
// mine lacks, if claimed before grace.
func (d *Driver) giveBackUnrecorded(ctx context.Context, name string, held map[netip.Addr]cluster.Address, mine map[netip.Addr]state.Address, grace time.Duration) []error {
	var errs []error
	for a, h := range held {
		if h.Host != d.cluster.HostID() || !h.Released.IsZero() || time.Since(h.Claimed) < grace {
			continue
		}
		if _, ok := mine[a]; ok {
			continue
		}
		if err := d.cluster.Release(ctx, name, a); err != nil {
			errs = append(errs, err)
			continue
		}
		d.repaired(drift.ClusterAddress, "given back in etcd: no record of it on this host", "network", name, "address", a)
	}
	return errs
}

func (d *Driver) repaired(kind, what string, args ...any) {
	d.log.Info("repaired: "+what, args...)
	if d.onRepair != nil {
		d.onRepair(kind)
	}
}

// RunCluster reconciles every interval until ctx ends (see ReconcileCluster).
func (d *Driver) RunCluster(ctx context.Context, interval time.Duration) {
	if d.cluster == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, clusterOp)
		err := d.ReconcileCluster(rctx, ClaimGrace)
		cancel()
		if err != nil {
			d.log.Warn("cluster: reconcile incomplete; trying again later", "err", err, "in", interval)
		}
	}
}
