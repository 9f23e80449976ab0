package driver

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// bridgeBackend: a Linux bridge per network with the gateway on it, a veth
// pair per endpoint, NAT, isolation and published ports in iptables.
type bridgeBackend struct {
	d     *Driver
	later bool // teardown deletes the bridge in the background
}

func (bridgeBackend) name(rec *state.Network) {
	if rec.Bridge == "" {
		rec.Bridge = firewall.BridgeName(rec.ID)
	}
}

func (bridgeBackend) check(rec state.Network, others []state.Network) error {
	for _, o := range others {
		if bridged(o) && o.Bridge == rec.Bridge {
			return protocol.BadRequest("bridge %s is already used by mynet network %s: give another %s", rec.Bridge, protocol.Short(o.ID), optBridgeName)
		}
	}
	return nil
}

func (b bridgeBackend) createLink(n state.Network, ep *state.Endpoint, mac net.HardwareAddr) error {
	ep.HostIf, ep.ContainerIf = hostIfName(ep.ID), containerIfName(ep.ID)
	if err := link.CreateVeth(link.Veth{Host: ep.HostIf, Peer: ep.ContainerIf, Bridge: n.Bridge, MTU: n.MTU, PeerMAC: mac, HostMAC: b.d.linkMAC(ep.HostIf)}); err != nil {
		return err
	}
	b.d.mark(ep.HostIf, ep.ContainerIf)
	return nil
}

// join: the bridge's gateways; like Docker's bridge on 20.10, also for
// internal networks (whose rules drop what leaves the subnet).
func (bridgeBackend) join(n state.Network, ep state.Endpoint, resp *api.JoinResponse) {
	resp.Gateway, resp.GatewayIPv6 = gateways(n, ep)
	if resp.Gateway == "" {
		resp.DisableGatewayService = true
	}
}

// gateways returns the plain-IP gateways Join announces for ep: none for a
// family in gateway mode isolated.
func gateways(n state.Network, ep state.Endpoint) (v4, v6 string) {
	for _, s := range n.IPv4 {
		if s.Gateway.IsValid() && n.GatewayModeV4 != gwIsolated {
			v4 = s.Gateway.Addr().String()
		}
	}
	if ep.IPv6.IsValid() && n.GatewayModeV6 != gwIsolated {
		for _, s := range n.IPv6 {
			if s.Gateway.IsValid() {
				v6 = s.Gateway.Addr().String()
			}
		}
	}
	return v4, v6
}

// setup makes the kernel match rec: bridge, gateway addresses, forwarding.
// When creating, it records in rec whether it created the bridge and, on a
// bridge it did not create, the gateway addresses it added. On such a bridge
// it also notes the settings the rules are about to change (noteSysctls).
func (b bridgeBackend) setup(rec *state.Network, _ []state.Network, creating bool) (retErr error) {
	d := b.d
	if !creating && !rec.BridgeCreated {
		if err := awaitLink(rec.Bridge, "bridge"); err != nil {
			return err
		}
	}
	br, created, err := link.SetUpBridge(rec.Bridge, rec.MTU, d.linkMAC(rec.Bridge))
	if err != nil {
		return err
	}
	if created {
		rec.BridgeCreated = true
		if err := br.SetAlias(d.owner); err != nil {
			d.log.Warn("mark link", "link", rec.Bridge, "err", err)
		}
	} else if rec.BridgeCreated {
		// Made by an older mynet, whose bridges took their ports' lowest
		// MAC: one that changes cuts containers off for up to a minute.
		if err := link.PinBridgeMAC(rec.Bridge); err != nil {
			d.log.Warn("keep the bridge's MAC address", "network", protocol.Short(rec.ID), "err", err)
		}
	}
	defer func() {
		if retErr != nil {
			undo := *rec
			undo.BridgeCreated = created // never delete a bridge this call did not make
			retErr = errors.Join(retErr, removeBridge(undo))
		}
	}()
	if _, _, err := d.sysctls.Set("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	for _, gw := range gatewayAddrs(*rec, false) {
		if err := ensureGateway(rec, br, gw, creating); err != nil {
			return err
		}
	}
	if rec.EnableIPv6 && len(rec.IPv6) > 0 {
		if _, _, err := d.sysctls.Set("net/ipv6/conf/"+rec.Bridge+"/disable_ipv6", "0"); err != nil {
			return err
		}
		if _, _, err := d.sysctls.Set("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
		for _, gw := range gatewayAddrs(*rec, true) {
			if err := ensureGateway(rec, br, gw, creating); err != nil {
				return err
			}
		}
	}
	return d.noteSysctls(rec)
}

// ensureGateway puts the subnet's gateway on the bridge. When creating on a
// bridge mynet did not make, an address it adds is recorded as mynet's: one
// the bridge already had is the user's, and stays when the network goes.
func ensureGateway(rec *state.Network, br link.Bridge, gw netip.Prefix, creating bool) error {
	added, err := br.EnsureAddr(gw)
	if err != nil {
		return err
	}
	if added && creating && !rec.BridgeCreated {
		rec.GatewaysAdded = append(slices.Clone(rec.GatewaysAdded), gw)
	}
	return nil
}

// noteSysctls records in rec, on a bridge we did not create, the value that
// each setting the firewall is about to change has now, unless it was noted
// before (by the create, or a start before this one).
func (d *Driver) noteSysctls(rec *state.Network) error {
	if rec.BridgeCreated {
		return nil
	}
	for key, value := range firewall.BridgeSysctls(fwNetwork(*rec)) {
		if _, noted := rec.SysctlsBefore[key]; noted {
			continue
		}
		cur, err := d.sysctls.Get(key)
		if err != nil {
			return err
		}
		if cur == value {
			continue // nothing to put back
		}
		noted := maps.Clone(rec.SysctlsBefore) // the caller's copy of rec may share the map
		if noted == nil {
			noted = map[string]string{}
		}
		noted[key] = cur
		rec.SysctlsBefore = noted
	}
	return nil
}

// putSysctlsBack gives the settings noted in rec their earlier values where
// they still hold what the firewall wrote (a later change is someone
// else's).
func (d *Driver) putSysctlsBack(rec state.Network) error {
	wrote := firewall.BridgeSysctls(fwNetwork(rec))
	var errs []error
	for key, prev := range rec.SysctlsBefore {
		cur, err := d.sysctls.Get(key)
		if err != nil || cur != wrote[key] {
			continue // the bridge is gone, or the value is no longer ours
		}
		if _, _, err := d.sysctls.Set(key, prev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// teardown puts back the settings noted on a bridge we did not create (first,
// so that route_localnet is never on without the rules that guard it), then
// removes the rules and the bridge.
func (b bridgeBackend) teardown(rec state.Network, _ []state.Network) error {
	remove := removeBridge
	if b.later {
		remove = b.d.removeBridgeLater
	}
	return errors.Join(b.d.putSysctlsBack(rec), b.d.fw.RemoveNetwork(fwNetwork(rec)), remove(rec))
}

// removeBridgeLater is removeBridge for a bridge we made: it takes it down,
// which takes its routes and the ports' carrier with it, and leaves its
// deletion to the reaper. A bridge that will not go down is deleted now.
func (d *Driver) removeBridgeLater(rec state.Network) error {
	if !rec.BridgeCreated || link.SetDown(rec.Bridge) != nil {
		return removeBridge(rec)
	}
	d.reaper.Delete(rec.Bridge)
	return nil
}

// removeBridge deletes the bridge if we made it, else only the addresses we
// added to it.
func removeBridge(rec state.Network) error {
	if rec.BridgeCreated {
		return link.Delete(rec.Bridge)
	}
	var errs []error
	for _, gw := range rec.GatewaysAdded {
		errs = append(errs, link.DelAddr(rec.Bridge, gw))
	}
	return errors.Join(errs...)
}

// gatewayAddrs are the gateway addresses (with prefix length) of one family
// that go on the bridge: none in gateway mode isolated, and no IPv4 one with
// inhibit_ipv4 (the gateway is another machine on the bridge's LAN).
func gatewayAddrs(rec state.Network, v6 bool) []netip.Prefix {
	subnets, mode := rec.IPv4, rec.GatewayModeV4
	if v6 {
		subnets, mode = rec.IPv6, rec.GatewayModeV6
	}
	if mode == gwIsolated || (!v6 && rec.InhibitIPv4) {
		return nil
	}
	var out []netip.Prefix
	for _, s := range subnets {
		if s.Gateway.IsValid() {
			out = append(out, s.Gateway)
		}
	}
	return out
}

// restoreEndpoint puts a surviving host veth back on its bridge and re-takes
// its published ports.
func (b bridgeBackend) restoreEndpoint(n state.Network, ep state.Endpoint, masters map[string]string) error {
	d := b.d
	var errs []error
	if master, ok, err := masterOf(masters, ep.HostIf); ok {
		if err != nil || master != n.Bridge {
			errs = append(errs, link.AttachByName(ep.HostIf, n.Bridge))
			d.log.Info("repaired: re-attached endpoint to its bridge", "endpoint", protocol.Short(ep.ID), "bridge", n.Bridge)
			d.repaired(RepairEndpointAttach)
		}
	}
	if len(ep.Ports) > 0 {
		for _, pb := range ep.Ports {
			if pb.HostPort == 0 {
				continue // gateway mode routed: no host port
			}
			if err := d.ports.Restore(pb); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, b.publish(n, ep.Ports))
	}
	return errors.Join(errs...)
}

// masterOf says whether link name exists and names its master: from the
// dump masters when there is one, else asking the kernel.
func masterOf(masters map[string]string, name string) (master string, exists bool, err error) {
	if masters != nil {
		master, exists = masters[name]
		return master, exists, nil
	}
	if exists, _ = link.Exists(name); !exists {
		return "", false, nil
	}
	master, err = link.Master(name)
	return master, true, err
}

// linkMAC is the MAC address of a bridge, or of the host end of a veth
// pair, this instance makes. A bridge made again (a reboot, a bridge deleted
// by hand) has the same one, so the containers that survived keep reaching
// their gateway; and since it is set in the netlink request that creates the
// link, it also tells a link of ours from others' when a crash came before
// the mark (the alias, a second request): see findOrphans.
func (d *Driver) linkMAC(name string) net.HardwareAddr {
	return link.StableMAC(d.owner + "/" + name)
}
