package reconcile

import (
	"context"
	"log/slog"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/internal/periodic"
)

// Outcomes of a background run (mynet_reconcile_runs_total{outcome}).
const (
	OK                = "ok"                 // compared, and every drift with a repair was repaired or is held
	RepairFailed      = "repair_failed"      // a repair was tried and failed
	DockerUnreachable = "docker_unreachable" // Docker did not answer in time: nothing done
	NoSharedNetwork   = "no_shared_network"  // Docker's view holds none of our networks: nothing done
	Busy              = "busy"               // a `mynet doctor` run was in progress: skipped
)

// Outcomes lists every outcome.
var Outcomes = []string{OK, RepairFailed, DockerUnreachable, NoSharedNetwork, Busy}

// Loop reads Docker's view every interval and repairs what `mynet doctor
// --fix` would, except that what Docker lacks (a network, an endpoint, a pool,
// an address) is removed only once it has been missing for a whole interval:
// one look at a dockerd that is restoring its networks, or at a view read
// network by network while Docker works, must never remove what a container
// uses.
type Loop struct {
	Repairer *Repairer
	// View reads Docker's view; it must give up by ctx's deadline.
	View  func(ctx context.Context) (drift.View, error)
	Every time.Duration
	Grace time.Duration
	Log   *slog.Logger
	// OnRun, when set, hears each run's outcome and when it ended.
	OnRun func(outcome string, at time.Time)

	missingSince map[string]time.Time // drift key -> view time it was first seen missing
}

// viewTimeout bounds one reading of Docker's view: its calls never hold a
// lock, but a dockerd that hangs should cost a run, not the next ones.
const viewTimeout = time.Minute

// Run waits an interval before each run (none at start: dockerd may be
// waiting for its plugins) until ctx ends. The wait starts when a run ends,
// so two views are always at least an interval apart.
func (l *Loop) Run(ctx context.Context) {
	periodic.Run(ctx, l.Every, func() { l.Once(ctx) })
}

// held: drift kinds that mean "Docker has no such thing", repaired only when
// seen again a whole interval later. What the kernel lacks or has in excess
// does not depend on Docker's view and is repaired at once.
func held(kind string) bool {
	switch kind {
	case drift.NetworkUnknownToDocker, drift.EndpointUnknownToDocker, drift.PoolUnused, drift.AddressUnused:
		return true
	}
	return false
}

// Once runs one reconcile and returns its outcome.
func (l *Loop) Once(ctx context.Context) string {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	if l.missingSince == nil {
		l.missingSince = map[string]time.Time{}
	}
	start := time.Now()
	vctx, cancel := context.WithTimeout(ctx, viewTimeout)
	v, err := l.View(vctx)
	cancel()
	if ctx.Err() != nil {
		return "" // shutting down
	}
	done := func(outcome string) string {
		log.Debug("reconcile run", "outcome", outcome, "view_at", v.FetchedAt, "took", time.Since(start))
		if l.OnRun != nil {
			l.OnRun(outcome, time.Now())
		}
		return outcome
	}
	if err != nil {
		log.Warn("reconcile: no view from Docker, nothing repaired", "err", err)
		return done(DockerUnreachable)
	}

	seen := map[string]bool{}
	tried := map[string]bool{}
	fix := func(d drift.Drift) bool {
		key := d.Kind + " " + d.Object
		if held(d.Kind) {
			seen[key] = true
			first, ok := l.missingSince[key]
			if !ok || v.FetchedAt.Sub(first) < l.Every {
				return false
			}
		}
		tried[key] = true
		return true
	}
	ds, ran, err := l.Repairer.TryDo(Run{View: v, HasView: true, Fix: fix, Grace: l.Grace, By: "reconcile"})
	switch {
	case !ran:
		log.Info("reconcile: skipped, a mynet doctor run is in progress")
		return done(Busy)
	case err != nil:
		log.Warn("reconcile: nothing repaired", "err", err)
		return done(NoSharedNetwork)
	}
	for key := range seen {
		if _, ok := l.missingSince[key]; !ok {
			l.missingSince[key] = v.FetchedAt
		}
	}
	for key := range l.missingSince {
		if !seen[key] {
			delete(l.missingSince, key) // repaired, or Docker has it after all
		}
	}
	outcome := OK
	for _, d := range ds {
		key := d.Kind + " " + d.Object
		switch {
		case tried[key] && !d.Fixed:
			outcome = RepairFailed
		case held(d.Kind) && !tried[key]:
			log.Info("reconcile: Docker lacks it; removed if still missing at the next run", "kind", d.Kind, "object", d.Object, "next_run_in", l.Every)
		}
	}
	return done(outcome)
}
