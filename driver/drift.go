package driver

import (
	"context"
	"fmt"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// Doctor compares the driver's records with the kernel, with etcd's for
// cluster networks, and, when hasView, with Docker's view, and repairs each drift fix approves the way the
// protocol call or the start-up restore would, under the network's lock,
// after checking the drift still holds.
func (d *Driver) Doctor(v drift.View, hasView bool, fix drift.Fix, grace time.Duration) []drift.Drift {
	var out []drift.Drift
	// Each repair counts what it put right itself (see counted).
	report := func(dr drift.Drift, repair func() error) {
		out = append(out, drift.Apply(dr, fix, repair))
	}
	nets, eps := d.Snapshot()
	if hasView {
		for _, n := range nets {
			if _, ok := v.Networks[n.ID]; ok || !v.Mature(n.Created, grace) {
				continue
			}
			report(drift.Drift{Kind: drift.NetworkUnknownToDocker, Object: "network " + protocol.Short(n.ID),
				Detail: fmt.Sprintf("%s network (%s) that Docker no longer has: remove it with its endpoints", n.Backend, nameOf(n))},
				d.counted(drift.NetworkUnknownToDocker, func() error {
					return d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: n.ID})
				}))
		}
		for _, ep := range eps {
			dn, ok := v.Networks[ep.NetworkID]
			if !ok || !v.Mature(ep.Created, grace) {
				continue // a network Docker lacks is reported (and removed) whole
			}
			if _, ok := dn.Endpoints[ep.ID]; ok {
				continue
			}
			report(drift.Drift{Kind: drift.EndpointUnknownToDocker, Object: "endpoint " + protocol.Short(ep.ID),
				Detail: fmt.Sprintf("on network %s (%s), address %s: no container of Docker's uses it", dn.Name, protocol.Short(ep.NetworkID), ep.IPv4)},
				d.counted(drift.EndpointUnknownToDocker, func() error {
					return d.deleteEndpoint(ep.NetworkID, ep.ID, false) // done when the repair is reported
				}))
		}
	}
	d.kernelDrift(report)
	ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
	defer cancel()
	d.clusterDrift(ctx, grace, report)
	return out
}

// kernelDrift: links and rules the records expect but the kernel lacks, and
// marked links or rules that no record claims.
func (d *Driver) kernelDrift(report func(drift.Drift, func() error)) {
	present, err := d.rulesPresent()
	if err != nil {
		report(drift.Drift{Kind: drift.RulesMissing, Object: "firewall", Detail: "cannot list rules: " + err.Error()}, nil)
	}
	nets, eps := d.Snapshot()
	intact := map[string]state.Network{} // networks whose own links are all there
	for _, n := range nets {
		missing := survey{}.missingLinks(n)
		if len(missing) == 0 {
			intact[n.ID] = n
		}
		noRules := err == nil && d.backend(n.Backend).rulesMissing(n, present)
		if len(missing) == 0 && !noRules {
			continue
		}
		if len(missing) > 0 && !madeLinks(n) {
			report(drift.Drift{Kind: drift.LinksMissing, Object: "network " + protocol.Short(n.ID),
				Error:  "not mynet's to create: they existed when the network was created",
				Detail: fmt.Sprintf("links %v of the user's are gone: mynet sets the network up again once the network configuration makes them", missing)}, nil)
			continue
		}
		kind, detail := drift.LinksMissing, fmt.Sprintf("links %v are gone", missing)
		if len(missing) == 0 {
			kind, detail = drift.RulesMissing, fmt.Sprintf("the firewall rules of bridge %s are gone", n.Bridge)
		}
		report(drift.Drift{Kind: kind, Object: "network " + protocol.Short(n.ID), Detail: detail + ": re-create as at start-up"},
			func() error { return d.rebuild([]string{n.ID}, survey{rules: present}) })
	}
	masters, mErr := link.Masters()
	for _, ep := range eps {
		n, ok := intact[ep.NetworkID]
		if ep.HostIf == "" || !ok {
			continue // macvlan/ipvlan links live in the container's namespace; a network's missing links are reported above
		}
		master, exists, err := masterOf(masters, ep.HostIf)
		if mErr != nil {
			master, exists, err = masterOf(nil, ep.HostIf)
		}
		switch {
		case !exists:
			report(drift.Drift{Kind: drift.EndpointLinkMissing, Object: "endpoint " + protocol.Short(ep.ID),
				Error:  "cannot be repaired from outside the container",
				Detail: fmt.Sprintf("host veth %s is gone, the container (address %s) is cut off: restart the container", ep.HostIf, ep.IPv4)}, nil)
		case err == nil && master != n.Bridge:
			report(drift.Drift{Kind: drift.EndpointDetached, Object: "endpoint " + protocol.Short(ep.ID),
				Detail: fmt.Sprintf("host veth %s is not on bridge %s (master %q), the container (address %s) is cut off: put it back as at start-up", ep.HostIf, n.Bridge, master, ep.IPv4)},
				func() error { return d.rebuild([]string{n.ID}, survey{rules: present}) })
		}
	}
	// Calls in flight make links and rules before their records: with every
	// create and change held, what no record claims is truly an orphan.
	release := d.quiesce()
	defer release()
	for _, o := range d.findOrphans(survey{}) {
		report(o.drift, d.counted(o.drift.Kind, o.remove))
	}
}

// quiesce holds CreateNetwork and every network's lock (in the order
// CreateNetwork takes them: createMu, then networks) until release.
func (d *Driver) quiesce() (release func()) {
	d.createMu.Lock()
	d.mu.Lock()
	ids := make([]string, 0, len(d.networks))
	for id := range d.networks {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	unlock := d.lockNetworks(ids)
	return func() {
		unlock()
		d.createMu.Unlock()
	}
}

// counted makes repair count as one repair of kind when it succeeds.
func (d *Driver) counted(kind string, repair func() error) func() error {
	return func() error {
		err := repair()
		if err == nil {
			d.repaired(kind)
		}
		return err
	}
}

func nameOf(n state.Network) string {
	if n.Bridge != "" {
		return "bridge " + n.Bridge
	}
	return "parent " + n.Parent
}
