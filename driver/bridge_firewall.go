package driver

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// The bridge backend's firewall rules: NAT, isolation and published ports
// of each network, in chains shared by all of them.

func (bridgeBackend) hasRules() bool  { return true }
func (bridgeBackend) publishes() bool { return true }

func (bridgeBackend) rulesMissing(rec state.Network, present map[string]bool) bool {
	return !present[rec.Bridge]
}

// addRules programs many networks with one iptables-restore per family (a
// start after a reboot re-adds every network); if that fails, network by
// network, so that one broken network does not keep the others' rules out.
func (b bridgeBackend) addRules(recs []state.Network) []error {
	errs := make([]error, len(recs))
	fws := make([]firewall.Network, len(recs))
	for i, rec := range recs {
		fws[i] = fwNetwork(rec)
	}
	if len(fws) > 1 {
		changed, err := b.d.fw.AddNetworks(fws)
		if err == nil {
			if len(changed) > 0 {
				b.d.log.Info("firewall rules added or brought up to date", "networks", len(changed), "of", len(fws))
			}
			return errs
		}
		b.d.log.Warn("adding the rules of many networks at once failed: one by one", "networks", len(fws), "err", err)
	}
	for i := range fws {
		if err := b.d.fw.AddNetwork(fws[i]); err != nil {
			errs[i] = fmt.Errorf("firewall for network %s: %w", protocol.Short(recs[i].ID), err)
		}
	}
	return errs
}

func (b bridgeBackend) publish(n state.Network, bs []state.PortBinding) error {
	return b.d.fw.AddPorts(fwNetwork(n), bs)
}

func (b bridgeBackend) unpublish(n state.Network, bs []state.PortBinding) error {
	return b.d.fw.RemovePorts(fwNetwork(n), bs)
}

// fwNetwork is what the firewall needs to know of a network.
func fwNetwork(rec state.Network) firewall.Network {
	n := firewall.Network{ID: rec.ID, Bridge: rec.Bridge, ICC: rec.ICC, Masquerade: rec.Masquerade, Internal: rec.Internal,
		GatewayModeV4: rec.GatewayModeV4, GatewayModeV6: rec.GatewayModeV6, TrustedIfs: rec.TrustedIfs}
	for _, s := range rec.IPv4 {
		n.Subnets = append(n.Subnets, s.Pool)
	}
	if rec.EnableIPv6 {
		for _, s := range rec.IPv6 {
			n.Subnets = append(n.Subnets, s.Pool)
		}
	}
	return n
}

// forgetEarlierFlows forgets the flows our rules accepted before the bridges
// of recs routed their subnets (a new network, or a bridge made again),
// for the bridges whose name the firewall does not know for ours (given
// with com.docker.network.bridge.name): a connection mynet accepted skips
// the rules after its first packet unless it goes between two bridges it
// knows by name (see firewall's known.go), so one that went out through the
// uplink before must not go on into such a network unchecked. Call it once
// the network's rules are in place. A failure (no conntrack netlink in this
// kernel) is only logged: without conntrack no connection carries the mark.
func (d *Driver) forgetEarlierFlows(recs ...state.Network) {
	var subnets []netip.Prefix
	for _, rec := range recs {
		if d.backend(rec.Backend).hasRules() && !strings.HasPrefix(rec.Bridge, firewall.BridgePrefix) {
			subnets = append(subnets, fwNetwork(rec).Subnets...)
		}
	}
	if len(subnets) == 0 {
		return
	}
	if err := link.FlushMarkedConntrack(subnets, firewall.AcceptedMark); err != nil {
		d.log.Warn("forget earlier flows of the networks' subnets", "networks", len(recs), "err", err)
	}
}
