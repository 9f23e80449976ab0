package driver

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
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
	ids := make([]string, 0, len(nets))
	for _, rec := range nets {
		d.networks[rec.ID] = &netEntry{rec: rec}
		ids = append(ids, rec.ID)
	}
	for i := range eps {
		ep := eps[i]
		d.endpoints[ep.ID] = &ep
		if _, ok := d.networks[ep.NetworkID]; !ok {
			d.log.Warn("endpoint of unknown network", "endpoint", protocol.Short(ep.ID), "network", protocol.Short(ep.NetworkID))
		}
	}
	s := d.surveyAll()
	d.rebuild(ids, s) // logs each failure
	d.removeOrphans(s)
	return nil
}

// surveyAll reads our rules once instead of once per network, and dumps
// every link once instead of asking for each endpoint and orphan. Every
// network's rules are compared with what this version wants (recheck), in
// one batch: present and current rules cost no iptables process, and rules
// partly gone or made by an older mynet are brought up to date. The links a
// rebuild creates are not in the dump: none is an endpoint's, and every one
// is claimed by a record.
func (d *Driver) surveyAll() survey {
	s := survey{recheck: true}
	var err error
	if s.rules, err = d.rulesPresent(); err != nil {
		d.log.Warn("list firewall rules", "err", err) // all re-added
	}
	if s.masters, err = link.Masters(); err != nil {
		d.log.Warn("list links", "err", err)
		s.masters = nil // fall back to one query per link
	}
	return s
}

// ourLinkName matches the names mynet gives links: mn-<12> bridges, mnh/mnc
// veth ends and macvlan/ipvlan links, mnd dummy parents, mnv VXLAN devices.
var ourLinkName = regexp.MustCompile(`^mn[-hcdv][0-9a-f]{12}$`)

// orphan is a kernel object of ours that no record claims: what a crash
// between a kernel change and its record, or a record removed by hand,
// leaves behind.
type orphan struct {
	drift  drift.Drift
	remove func() error
}

// removeOrphans deletes the orphans, logging each.
func (d *Driver) removeOrphans(s survey) {
	for _, o := range d.findOrphans(s) {
		if err := o.remove(); err != nil {
			d.log.Error("remove orphan", "what", o.drift.Object, "err", err)
		} else {
			d.log.Info("repaired: removed "+o.drift.Detail, "what", o.drift.Object)
			d.repaired(o.drift.Kind)
		}
	}
}

// findOrphans lists links with our names and this instance's mark, and rules
// with our comments, that no record claims. The link names come from the
// survey's dump when it has one.
func (d *Driver) findOrphans(s survey) []orphan {
	d.mu.Lock()
	claimed := map[string]bool{}
	ids := map[string]string{} // 12-char id: full id
	ports := map[portOf]bool{}
	for _, n := range d.networks {
		claimed[n.rec.Bridge], claimed[n.rec.Parent], claimed[n.rec.VXLAN] = true, true, true
		ids[protocol.Short(n.rec.ID)] = n.rec.ID
	}
	for _, name := range d.reaper.Pending() { // on their way out already
		claimed[name] = true
	}
	for _, ep := range d.endpoints {
		claimed[ep.HostIf], claimed[ep.ContainerIf] = true, true
		for _, b := range ep.Ports {
			for _, r := range b.Translated() { // as the DNAT rules read back
				ports[portOf{protocol.Short(ep.NetworkID), normalPort(r)}] = true
			}
		}
	}
	d.mu.Unlock()
	var out []orphan
	var names []string
	var err error
	if s.masters != nil {
		for name := range s.masters {
			names = append(names, name)
		}
	} else if names, err = link.Names(); err != nil {
		d.log.Warn("list links to find orphans", "err", err)
	}
	for _, name := range names {
		if ourLinkName.MatchString(name) && !claimed[name] && d.madeHere(name) {
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
		if ids[o.ID] == "" && d.madeRules(o) {
			out = append(out, orphan{
				drift: drift.Drift{Kind: drift.OrphanRules, Object: "network " + o.ID,
					Detail: fmt.Sprintf("firewall rules (bridge %s) no record claims", o.Bridge)},
				remove: func() error { return d.fw.RemoveNetwork(firewall.Network{ID: o.ID}) },
			})
		}
	}
	return append(out, d.strayPorts(ids, ports)...)
}

// portOf is a published port of the network with that 12-char id.
type portOf struct {
	id12 string
	b    state.PortBinding
}

// normalPort is b as its DNAT rule reads back: an unspecified host address
// is every address.
func normalPort(b state.PortBinding) state.PortBinding {
	if b.HostIP.IsUnspecified() {
		b.HostIP = netip.Addr{}
	}
	return b
}

// strayPorts lists the DNAT rules of our networks that no endpoint record
// claims: a crash between a rule and its record, which would forward the host
// port to whichever container gets that address next. (The rules of networks
// no record claims go with the network's, above.)
func (d *Driver) strayPorts(ids map[string]string, claimed map[portOf]bool) []orphan {
	published, err := d.fw.PublishedPorts()
	if err != nil {
		d.log.Warn("list published ports to find orphans", "err", err)
		return nil
	}
	var out []orphan
	for id12, bs := range published {
		id := ids[id12]
		if id == "" {
			continue
		}
		for _, b := range bs {
			if claimed[portOf{id12, normalPort(b)}] {
				continue
			}
			out = append(out, orphan{
				drift: drift.Drift{Kind: drift.OrphanPort, Object: "network " + id12,
					Detail: fmt.Sprintf("published port %s that no endpoint record claims", b)},
				remove: func() error { return d.fw.RemovePorts(firewall.Network{ID: id}, []state.PortBinding{b}) },
			})
		}
	}
	return out
}

// madeRules tells whether this instance made the rules of o. They name the
// instance that made them; rules that name none (an older mynet made them)
// are ours on a bridge we marked, or on a bridge that is gone, where they
// match nothing. On a bridge with no mark they may be another instance's:
// they stay.
func (d *Driver) madeRules(o firewall.OwnedNetwork) bool {
	if o.Owner != "" {
		return "mynet:"+o.Owner == d.owner
	}
	if ok, _ := link.Exists(o.Bridge); !ok {
		return true
	}
	return link.Alias(o.Bridge) == d.owner
}

// missingLinks names the network-level links a record expects but the
// kernel lacks (for the repair log), from the survey's dump of the links
// when it has one (a start with a thousand networks asks no more).
func (s survey) missingLinks(rec state.Network) []string {
	var out []string
	for _, name := range []string{rec.Bridge, rec.Parent, rec.VXLAN} {
		if name == "" {
			continue
		}
		ok := false
		if s.masters != nil {
			_, ok = s.masters[name]
		} else {
			ok, _ = link.Exists(name)
		}
		if !ok {
			out = append(out, name)
		}
	}
	return out
}

// madeHere reports whether this instance made the link: it carries our
// mark, or it is unmarked with the MAC address we give our bridges and
// veths (a crash between creating a link and marking it leaves only that).
func (d *Driver) madeHere(name string) bool {
	alias, mac := link.AliasAndMAC(name)
	return alias == d.owner || (alias == "" && bytes.Equal(mac, d.linkMAC(name)))
}
