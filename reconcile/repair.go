// Package reconcile repairs drift between the store, the kernel and Docker's
// view. Both `mynet doctor` (through the admin socket) and the daemon's own
// background loop go through one Repairer, so they repair alike and never at
// the same time.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/timing"
)

// ErrNoSharedNetwork refuses a repair against a view that holds none of the
// store's networks: Docker's API of another engine, or one still empty,
// would have every network removed and every pool released.
var ErrNoSharedNetwork = errors.New("Docker's view shares no network with the store")

// Repairer runs doctor checks and repairs, one at a time.
type Repairer struct {
	net  *driver.Driver
	ipam *ipam.Driver
	log  *slog.Logger
	mu   sync.Mutex
}

// NewRepairer checks and repairs what the two drivers hold.
func NewRepairer(net *driver.Driver, ipam *ipam.Driver, log *slog.Logger) *Repairer {
	if log == nil {
		log = slog.Default()
	}
	return &Repairer{net: net, ipam: ipam, log: log}
}

// Run is one doctor run.
type Run struct {
	View    drift.View
	HasView bool      // false: store against kernel only
	Fix     drift.Fix // nil: report only
	Grace   time.Duration
	// Force repairs even when the view shares no network with the store
	// (an operator who knows Docker really has none of them).
	Force bool
	By    string // who asked, for the log: "doctor" or "reconcile"
}

// Do waits for any run in progress, then runs.
func (r *Repairer) Do(run Run) ([]drift.Drift, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.do(run)
}

// TryDo runs unless another run is in progress (ran false then).
func (r *Repairer) TryDo(run Run) (ds []drift.Drift, ran bool, err error) {
	if !r.mu.TryLock() {
		return nil, false, nil
	}
	defer r.mu.Unlock()
	ds, err = r.do(run)
	return ds, true, err
}

func (r *Repairer) do(run Run) ([]drift.Drift, error) {
	if run.HasView && run.Fix != nil && !run.Force {
		if err := r.shares(run.View); err != nil {
			return nil, err
		}
	}
	span := timing.Begin() // its kernel and bbolt work is no request's
	defer span.End()
	drifts := r.net.Doctor(run.View, run.HasView, run.Fix, run.Grace)
	if run.HasView {
		drifts = append(drifts, r.ipam.Doctor(run.View, run.Fix, run.Grace)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	drifts = append(drifts, r.ipam.ClusterDrift(ctx, run.Grace, run.Fix)...) // none without --cluster
	cancel()
	for _, d := range drifts {
		switch {
		case d.Fixed:
			r.log.Info("repaired: "+d.Kind+" "+d.Object, "detail", d.Detail, "by", run.By)
		case d.Error != "":
			r.log.Warn("drift not repaired", "kind", d.Kind, "object", d.Object, "detail", d.Detail, "err", d.Error, "by", run.By)
		default:
			r.log.Info("drift", "kind", d.Kind, "object", d.Object, "detail", d.Detail, "by", run.By)
		}
	}
	return drifts, nil
}

// shares says why not when the view holds none of the store's networks (by
// id) and none of its pools (by subnet and range). An empty store shares
// nothing and risks nothing.
func (r *Repairer) shares(v drift.View) error {
	nets, _ := r.net.Snapshot()
	for _, n := range nets {
		if _, ok := v.Networks[n.ID]; ok {
			return nil
		}
	}
	inView := map[[2]netip.Prefix]bool{}
	for _, n := range v.Networks {
		for _, p := range n.Pools {
			inView[[2]netip.Prefix{p.Subnet.Masked(), p.IPRange.Masked()}] = true
		}
	}
	pools := r.ipam.Usage()
	for _, p := range pools {
		if inView[[2]netip.Prefix{p.Pool.Masked(), p.Range.Masked()}] {
			return nil
		}
	}
	if len(nets) == 0 && len(pools) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the store holds %d network(s) and %d pool(s), Docker's view has %d network(s) and none of them: is it the engine this mynet serves (--docker-host)? nothing was repaired",
		ErrNoSharedNetwork, len(nets), len(pools), len(v.Networks))
}
