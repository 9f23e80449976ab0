package driver

import (
	"errors"
	"fmt"
	"net/netip"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/ports"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// ProgramExternalConnectivity publishes the container's -p ports: host ports
// are held with real sockets (so conflicts are detected like Docker does),
// then DNAT rules send traffic to the container.
func (d *Driver) ProgramExternalConnectivity(req *api.ProgramExternalConnectivityRequest) (retErr error) {
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	n, ok := d.lookupNetwork(req.NetworkID)
	if !ok {
		return protocol.BadRequest("network %s is not a mynet network", protocol.Short(req.NetworkID))
	}
	ep, ok := d.lookupEndpoint(req.EndpointID)
	if !ok {
		return protocol.BadRequest("endpoint %s does not exist on network %s", protocol.Short(req.EndpointID), protocol.Short(req.NetworkID))
	}
	mappings, err := ports.ParsePortMap(req.Options[optPortMap])
	if err != nil {
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	if len(mappings) == 0 || len(ep.Ports) > 0 || n.rec.Internal {
		return nil // nothing asked, already done, or nothing may reach an internal network
	}
	b := d.backend(n.rec.Backend)
	if !b.publishes() {
		return protocol.BadRequest("published ports (-p %s) do not apply to %s networks: the container is reachable at its own address; remove -p", mappings[0], n.rec.Backend)
	}
	bindings, err := d.reserve(n.rec, *ep, mappings)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			d.ports.Release(bindings)
		}
	}()
	// The record comes before the rule: after a crash between the two, a
	// start publishes what the record holds. A rule no record claimed would
	// forward the host port to whichever container gets the address next
	// (a start and mynet doctor remove such rules too).
	ep.Ports = bindings
	if err := d.saveEndpoint(*ep); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			ep.Ports = nil
			retErr = errors.Join(retErr, d.saveEndpoint(*ep))
		}
	}()
	if err := b.publish(n.rec, bindings); err != nil {
		if errors.Is(err, firewall.ErrNetworkNotProgrammed) {
			return fmt.Errorf("publish ports of endpoint %s: the firewall rules of network %s are missing (removed by hand or by a firewall reload?): mynet's periodic check re-adds them within seconds, or run `mynet doctor --fix`; then start the container again", protocol.Short(ep.ID), protocol.Short(n.rec.ID))
		}
		return fmt.Errorf("publish ports of endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	return nil
}

// reserve holds host ports for each mapping. IPv6 host addresses go to the
// container's IPv6 address and the rest to its IPv4 address; without an
// address of the family asked for, to the other one (an IPv6 host address
// of an IPv4-only container is proxied by the socket that holds it). A
// mapping on every address of a dual-stack container also records its IPv6
// address, the target of the IPv6 side (see state.PortBinding).
func (d *Driver) reserve(n state.Network, ep state.Endpoint, ms []ports.Mapping) ([]state.PortBinding, error) {
	var v4, v6 []ports.Mapping
	has4, has6 := ep.IPv4.IsValid(), ep.IPv6.IsValid()
	for _, m := range ms {
		if !m.HostIP.IsValid() && n.HostBindingV4 != "" {
			m.HostIP = netip.MustParseAddr(n.HostBindingV4)
		}
		switch {
		case m.HostIP.Is6() && (has6 || !has4):
			v6 = append(v6, m)
		case !m.HostIP.IsValid() && !has4 && has6:
			v6 = append(v6, m)
		default:
			v4 = append(v4, m)
		}
	}
	if len(v4) > 0 && !has4 {
		return nil, protocol.BadRequest("endpoint %s has no IPv4 address to publish %s to", protocol.Short(ep.ID), v4[0])
	}
	if len(v6) > 0 && !has6 {
		return nil, protocol.BadRequest("endpoint %s has no IPv6 address to publish %s to", protocol.Short(ep.ID), v6[0])
	}
	var out []state.PortBinding
	// Gateway mode routed: the container's port is opened on its own
	// address; the host port is ignored and nothing is held (as Docker).
	if n.GatewayModeV4 == gwRouted {
		out = append(out, routedBindings(ep.IPv4.Addr(), v4)...)
		v4 = nil
	}
	if n.GatewayModeV6 == gwRouted {
		out = append(out, routedBindings(ep.IPv6.Addr(), v6)...)
		v6 = nil
	}
	if len(v4) > 0 {
		var b []state.PortBinding
		var err error
		if has6 && n.GatewayModeV6 != gwRouted {
			b, err = d.ports.ReserveDualStack(ep.IPv4.Addr(), ep.IPv6.Addr(), v4)
		} else {
			b, err = d.ports.Reserve(ep.IPv4.Addr(), v4)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	if len(v6) > 0 {
		b, err := d.ports.Reserve(ep.IPv6.Addr(), v6)
		if err != nil {
			d.ports.Release(out)
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// routedBindings are the bindings of a routed family: container ports only.
func routedBindings(containerIP netip.Addr, ms []ports.Mapping) []state.PortBinding {
	var out []state.PortBinding
	seen := map[state.PortBinding]bool{}
	for _, m := range ms {
		b := state.PortBinding{Proto: m.Proto, ContainerIP: containerIP, ContainerPort: m.ContainerPort}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}

// RevokeExternalConnectivity unpublishes the endpoint's ports. Idempotent.
func (d *Driver) RevokeExternalConnectivity(req *api.RevokeExternalConnectivityRequest) error {
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	n, ok := d.lookupNetwork(req.NetworkID)
	ep, ok2 := d.lookupEndpoint(req.EndpointID)
	if !ok || !ok2 || len(ep.Ports) == 0 {
		return nil
	}
	// The record first, as in ProgramExternalConnectivity.
	revoked := *ep
	ep.Ports = nil
	if err := d.saveEndpoint(*ep); err != nil {
		return err
	}
	return d.unpublish(n.rec, revoked)
}

// unpublish removes the rules and frees the host ports of ep.
func (d *Driver) unpublish(n state.Network, ep state.Endpoint) error {
	err := d.backend(n.Backend).unpublish(n, ep.Ports)
	d.ports.Release(ep.Ports)
	d.flushConntrack(ep)
	if err != nil {
		return fmt.Errorf("unpublish ports of endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	return nil
}
