package driver

import (
	"fmt"
	"regexp"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
)

// restore loads the store and makes the kernel match it: Docker never
// replays CreateNetwork, so after a reboot or a hand-deleted bridge only we
// can rebuild. Each repair is logged. One broken network does not stop the
// others from coming back.
func (d *Driver) restore() error {
	var nets []state.Network
	var eps []state.Endpoint
	err := d.store.View(func(tx *state.Tx) error {
		var err error
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	})
	if err != nil {
		return fmt.Errorf("load networks: %w", err)
	}
	for _, rec := range nets {
		cfg, err := parseNetworkOptions(map[string]any{optGeneric: toAny(rec.Options), optEnableIPv6: rec.EnableIPv6, optInternal: rec.Internal})
		if err != nil {
			d.log.Error("stored network has options this version refuses", "network", short(rec.ID), "err", err)
		}
		d.networks[rec.ID] = &netEntry{rec: rec, cfg: cfg}
	}
	// One read of our rules instead of one iptables-save per network: the
	// rules of networks already present are trusted (the periodic repair
	// re-adds any that go missing later).
	d.rulesPresent = map[string]bool{}
	if owned, err := d.fw.Owned(); err == nil {
		for _, b := range owned {
			d.rulesPresent[b] = true
		}
	}
	defer func() { d.rulesPresent = nil }()
	// Every record once, not all the others per network (quadratic): a
	// setup that looks at the others (a shared VLAN parent) finds its own
	// record among them harmless.
	all := d.networkRecords("")
	for _, n := range d.networks {
		rec := n.rec
		b := d.backend(rec.Backend)
		missing := missingLinks(rec)
		if err := b.setup(&rec, all); err != nil {
			d.log.Error("restore network", "network", short(rec.ID), "backend", rec.Backend, "err", err)
		} else if len(missing) > 0 {
			d.log.Info("repaired: re-created missing links", "network", short(rec.ID), "links", missing)
			d.repaired(RepairLinks)
		}
		n.rec = rec
	}
	d.addPendingRules()
	// One dump of every link for the endpoints and the orphan search below,
	// taken after the networks' links are back (nothing below creates one).
	if d.linkMasters, err = link.Masters(); err != nil {
		d.log.Warn("list links", "err", err)
		d.linkMasters = nil // fall back to one query per link
	}
	defer func() { d.linkMasters = nil }()
	for i := range eps {
		ep := eps[i]
		d.endpoints[ep.ID] = &ep
		n, ok := d.networks[ep.NetworkID]
		if !ok {
			d.log.Warn("endpoint of unknown network", "endpoint", short(ep.ID), "network", short(ep.NetworkID))
			continue
		}
		if err := d.backend(n.rec.Backend).restoreEndpoint(n.rec, ep); err != nil {
			d.log.Error("restore endpoint", "endpoint", short(ep.ID), "network", short(ep.NetworkID), "err", err)
		}
	}
	d.removeOrphans()
	return nil
}

// addPendingRules programs the rules of the networks restored without
// them in one batch; if the batch fails, network by network, so that one
// broken network does not keep the others' rules out.
func (d *Driver) addPendingRules() {
	pending := d.pendingRules
	d.pendingRules = nil
	if len(pending) == 0 {
		return
	}
	fws := make([]firewall.Network, len(pending))
	for i, rec := range pending {
		fws[i] = fwNetwork(rec)
	}
	err := d.fw.AddNetworks(fws)
	if err == nil {
		d.log.Info("repaired: re-added firewall rules", "networks", len(pending))
		for range pending {
			d.repaired(RepairFirewallRules)
		}
		return
	}
	d.log.Warn("re-adding the rules of all networks at once failed: one by one", "networks", len(pending), "err", err)
	for i, rec := range pending {
		if err := d.fw.AddNetwork(fws[i]); err != nil {
			d.log.Error("restore network", "network", short(rec.ID), "backend", rec.Backend, "err", fmt.Errorf("firewall: %w", err))
		}
	}
}

// ourLinkName matches the names mynet gives links: mn-<12> bridges, mnh/mnc
// veth ends and macvlan/ipvlan links, mnd dummy parents.
var ourLinkName = regexp.MustCompile(`^mn[-hcd][0-9a-f]{12}$`)

// orphan is a kernel object of ours that no record claims: what a crash
// between a kernel change and its record, or a record removed by hand,
// leaves behind.
type orphan struct {
	drift  drift.Drift
	remove func() error
}

// removeOrphans deletes the orphans, logging each.
func (d *Driver) removeOrphans() {
	for _, o := range d.findOrphans() {
		if err := o.remove(); err != nil {
			d.log.Error("remove orphan", "what", o.drift.Object, "err", err)
		} else {
			d.log.Info("repaired: removed "+o.drift.Detail, "what", o.drift.Object)
			d.repaired(o.drift.Kind)
		}
	}
}

// findOrphans lists links with our names and this instance's mark, and rules
// with our comments, that no record claims.
func (d *Driver) findOrphans() []orphan {
	d.mu.Lock()
	claimed := map[string]bool{}
	ids := map[string]bool{}
	for _, n := range d.networks {
		claimed[n.rec.Bridge], claimed[n.rec.Parent] = true, true
		ids[short(n.rec.ID)] = true
	}
	for _, ep := range d.endpoints {
		claimed[ep.HostIf], claimed[ep.ContainerIf] = true, true
	}
	d.mu.Unlock()
	var out []orphan
	var names []string
	var err error
	if d.linkMasters != nil {
		for name := range d.linkMasters {
			names = append(names, name)
		}
	} else if names, err = link.Names(); err != nil {
		d.log.Warn("list links to find orphans", "err", err)
	}
	for _, name := range names {
		if ourLinkName.MatchString(name) && !claimed[name] && link.Alias(name) == d.owner {
			out = append(out, orphan{
				drift:  drift.Drift{Kind: drift.OrphanLink, Object: "link " + name, Detail: "a link no record claims"},
				remove: func() error { return link.Delete(name) },
			})
		}
	}
	owned, err := d.fw.OwnedNetworks()
	if err != nil {
		d.log.Warn("list firewall rules to find orphans", "err", err)
		return out
	}
	for _, o := range owned {
		// Rules of a bridge another instance marked are that instance's.
		if alias := link.Alias(o.Bridge); !ids[o.ID] && (alias == "" || alias == d.owner) {
			out = append(out, orphan{
				drift: drift.Drift{Kind: drift.OrphanRules, Object: "network " + o.ID,
					Detail: fmt.Sprintf("firewall rules (bridge %s) no record claims", o.Bridge)},
				remove: func() error { return d.fw.RemoveNetwork(firewall.Network{ID: o.ID}) },
			})
		}
	}
	return out
}

// missingLinks names the network-level links a record expects but the
// kernel lacks (for the repair log).
func missingLinks(rec state.Network) []string {
	var out []string
	for _, name := range []string{rec.Bridge, rec.Parent} {
		if name != "" {
			if ok, _ := link.Exists(name); !ok {
				out = append(out, name)
			}
		}
	}
	return out
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
