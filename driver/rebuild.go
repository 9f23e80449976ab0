package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/internal/periodic"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
	"github.com/mynet/mynet/timing"
)

// Kinds of repair, as Config.OnRepair hears them: one call per thing put
// right, next to each "repaired: ..." log line. They are mynet doctor's
// drift kinds, so a repair at start and one by doctor --fix count alike.
const (
	RepairLinks          = drift.LinksMissing     // a network's missing bridge or parent re-created
	RepairEndpointAttach = drift.EndpointDetached // a veth put back on its bridge
	RepairFirewallRules  = drift.RulesMissing     // a network's missing rules re-added
	RepairOrphanLink     = drift.OrphanLink       // a link of ours no record claims, removed
	RepairOrphanRules    = drift.OrphanRules      // rules of ours no record claims, removed
	RepairOrphanPort     = drift.OrphanPort       // a published port no endpoint record claims, removed
	// With --cluster: an endpoint record in etcd published again or withdrawn.
	RepairEndpointRecord = drift.ClusterEndpointRecord
)

func (d *Driver) repaired(kind string) {
	if d.onRepair != nil {
		d.onRepair(kind)
	}
}

// survey is one look at the firewall and the links, taken before many
// networks are rebuilt so that no step asks the kernel again for each
// network or endpoint. A nil map was not looked at: the step asks itself.
type survey struct {
	rules   map[string]bool   // bridges whose firewall rules exist
	masters map[string]string // every link's master ("" none)
	recheck bool              // program every network's rules, present or not (idempotent)
}

// rebuild makes the kernel match the records of the networks ids and of
// their endpoints again, whatever went missing (a reboot, a bridge deleted
// by hand, a flushed firewall): links and addresses first, then the missing
// rules in one batch, then each endpoint's host side. Start-up restore, the
// periodic firewall check and mynet doctor --fix all rebuild here. Each
// repair is logged and counted; one broken network does not stop the others.
func (d *Driver) rebuild(ids []string, s survey) error {
	ids = slices.Compact(slices.Sorted(slices.Values(ids))) // a waiting network may also lack its rules
	release := d.lockNetworks(ids)
	defer release()
	// Every record once, not all the others per network (quadratic): a
	// setup that looks at the others (a shared VLAN parent) finds its own
	// record among them harmless.
	all := d.networkRecords("")
	var errs []error
	recs := map[string]state.Network{} // every network still here, set up or not
	var needRules []state.Network
	var routedAgain []state.Network // bridges made again or back: their subnets' routes are new
	gone := map[string]bool{}       // networks whose rules were missing, not just re-asserted
	for _, id := range ids {
		n, ok := d.lookupNetwork(id)
		if !ok {
			d.ready(id) // deleted meanwhile
			continue
		}
		rec := n.rec
		recs[id] = rec // its endpoints are restored even if setup fails: their host ports stay held
		b := d.backend(rec.Backend)
		missing := s.missingLinks(rec)
		if err := b.setup(&rec, all, false); err != nil {
			errs = append(errs, d.rebuildFailed(rec, err))
			continue
		}
		wasWaiting := d.ready(id)
		switch {
		case len(missing) > 0:
			d.log.Info("repaired: re-created missing links", "network", protocol.Short(rec.ID), "links", missing)
			d.repaired(RepairLinks)
		case wasWaiting:
			d.log.Info("repaired: network set up again: what it waited for is back", "network", protocol.Short(rec.ID), "bridge", rec.Bridge, "parent", rec.Parent)
			d.repaired(RepairLinks)
		}
		d.saveNotedSysctls(n.rec, rec)
		d.mu.Lock()
		n.rec = rec // what setup created is ours to remove
		d.mu.Unlock()
		recs[id] = rec
		gone[id] = b.rulesMissing(rec, s.rules)
		// A re-created bridge gets its rules again even when they are all
		// there: what they need of the bridge (route_localnet) went with it.
		if gone[id] || len(missing) > 0 || wasWaiting || s.recheck {
			needRules = append(needRules, rec)
		}
		if slices.Contains(missing, rec.Bridge) || wasWaiting {
			routedAgain = append(routedAgain, rec)
		}
	}
	errs = append(errs, d.addRules(needRules, gone)...)
	d.forgetEarlierFlows(routedAgain...)
	for _, ep := range d.endpointsOfNetworks(recs) {
		n := recs[ep.NetworkID]
		if err := d.backend(n.Backend).restoreEndpoint(n, ep, s.masters); err != nil {
			d.log.Error("restore endpoint", "endpoint", protocol.Short(ep.ID), "network", protocol.Short(ep.NetworkID), "err", err)
			errs = append(errs, fmt.Errorf("endpoint %s: %w", protocol.Short(ep.ID), err))
		}
	}
	return errors.Join(errs...)
}

// saveNotedSysctls stores the settings that setup noted in now.SysctlsBefore
// and the stored record lacks (a network made by an older mynet, on a user's
// bridge set up again since), so that they are put back however many starts
// later the network goes.
func (d *Driver) saveNotedSysctls(was, now state.Network) {
	if maps.Equal(was.SysctlsBefore, now.SysctlsBefore) {
		return
	}
	err := d.store.Update(func(tx *state.Tx) error {
		stored, ok, err := tx.Network(now.ID)
		if err != nil || !ok {
			return err
		}
		stored.SysctlsBefore = now.SysctlsBefore
		return tx.PutNetwork(stored)
	})
	if err != nil {
		d.log.Warn("record the settings to put back on the bridge", "network", protocol.Short(now.ID), "err", err)
	}
}

// rebuildFailed records that rec waits for another try (see Driver.waiting)
// and logs the error, once for as long as it stays the same.
func (d *Driver) rebuildFailed(rec state.Network, err error) error {
	msg := err.Error()
	d.mu.Lock()
	prev, was := d.waiting[rec.ID]
	d.waiting[rec.ID] = msg
	d.mu.Unlock()
	if !was || prev != msg {
		d.log.Error("rebuild network: tried again at each firewall check", "network", protocol.Short(rec.ID), "backend", rec.Backend, "err", err)
	}
	return fmt.Errorf("network %s: %w", protocol.Short(rec.ID), err)
}

// ready forgets that network id waits for another try; it says whether it
// did.
func (d *Driver) ready(id string) (was bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, was = d.waiting[id]
	delete(d.waiting, id)
	return was
}

func (d *Driver) waitingNetworks() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Keys(d.waiting))
}

// addRules programs the rules of recs, one batch per backend, and counts
// those that were gone as repaired.
func (d *Driver) addRules(recs []state.Network, gone map[string]bool) []error {
	byBackend := map[string][]state.Network{}
	for _, rec := range recs {
		byBackend[rec.Backend] = append(byBackend[rec.Backend], rec)
	}
	var errs []error
	for kind, recs := range byBackend {
		for i, err := range d.backend(kind).addRules(recs) {
			rec := recs[i]
			switch {
			case err != nil:
				errs = append(errs, d.rebuildFailed(rec, err))
			case gone[rec.ID]:
				d.log.Info("repaired: re-added missing firewall rules", "network", protocol.Short(rec.ID), "bridge", rec.Bridge)
				d.repaired(RepairFirewallRules)
			}
		}
	}
	return errs
}

// lockNetworks takes the locks of the networks ids in one order (sorted, as
// everyone taking several does) until release.
func (d *Driver) lockNetworks(ids []string) (release func()) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	unlocks := make([]func(), 0, len(ids))
	for _, id := range ids {
		unlocks = append(unlocks, d.netLock(id))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// endpointsOfNetworks returns the endpoints of the given networks, in one
// pass over all endpoints.
func (d *Driver) endpointsOfNetworks(nets map[string]state.Network) []state.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []state.Endpoint
	for _, e := range d.endpoints {
		if _, ok := nets[e.NetworkID]; ok {
			out = append(out, *e)
		}
	}
	return out
}

// Run checks the firewall until ctx ends: dockerd rebuilds its own chains at
// every start and puts its jumps above ours.
// Between two checks, a commit by anyone else to the nf_tables ruleset
// brings our jumps back to the top at once (see firewall.WatchRuleset).
func (d *Driver) Run(ctx context.Context, every time.Duration) {
	go d.followRuleset(ctx)
	periodic.Run(ctx, every, d.repairFirewall)
}

// followRuleset re-asserts our jumps after each commit to the ruleset while
// we have rules; our own commits cost one netlink round trip each (the
// cached copy is still exact).
func (d *Driver) followRuleset(ctx context.Context) {
	err := firewall.WatchRuleset(ctx, func() {
		if !d.hasFirewallRules() {
			return
		}
		span := timing.Begin() // background work, no request's
		defer span.End()
		if err := d.fw.EnsureBase(); err != nil {
			d.log.Warn("re-assert firewall jumps after a change of the ruleset", "err", err)
		}
	})
	if err != nil {
		d.log.Warn("not following changes of the ruleset: the periodic check alone puts our jumps back on top", "err", err)
	}
}

// hasFirewallRules reports whether a network of ours has firewall rules.
func (d *Driver) hasFirewallRules() bool {
	return slices.ContainsFunc(d.networkRecords(""), func(n state.Network) bool { return d.backend(n.Backend).hasRules() })
}

// repairFirewall re-asserts our jumps and rebuilds any network whose rules
// are gone (iptables -F, firewalld reload) or that waits for another try
// (a link of the user's not back yet): one iptables-save per family when
// nothing is missing.
func (d *Driver) repairFirewall() {
	// Background work marks itself so a request it overlaps does not claim
	// its iptables time.
	span := timing.Begin()
	defer span.End()
	ids := d.waitingNetworks()
	present, err := d.checkRules()
	if err != nil {
		d.log.Warn("check firewall rules", "err", err)
	}
	for _, n := range d.networkRecords("") {
		if present != nil && d.backend(n.Backend).rulesMissing(n, present) {
			ids = append(ids, n.ID)
		}
	}
	if len(ids) > 0 {
		d.rebuild(ids, survey{rules: present}) // logs each failure
	}
}

// checkRules re-asserts our jumps and lists the bridges whose rules exist;
// nil when no network has rules or they cannot be listed.
func (d *Driver) checkRules() (map[string]bool, error) {
	if !d.hasFirewallRules() {
		return nil, nil // no rules of ours to check
	}
	if err := d.fw.EnsureBase(); err != nil {
		return nil, fmt.Errorf("re-assert firewall jumps: %w", err)
	}
	present, err := d.rulesPresent()
	if err != nil {
		return nil, fmt.Errorf("list firewall rules: %w", err)
	}
	return present, nil
}

// rulesPresent lists the bridges whose firewall rules exist.
func (d *Driver) rulesPresent() (map[string]bool, error) {
	owned, err := d.fw.Owned()
	present := map[string]bool{}
	for _, b := range owned {
		present[b] = true
	}
	return present, err
}
