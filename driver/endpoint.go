package driver

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/driver/ports"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// Link names come from the endpoint id, so they are stable and never clash
// with Docker's own (veth + random hex).
func hostIfName(endpointID string) string      { return "mnh" + protocol.Short(endpointID) }
func containerIfName(endpointID string) string { return "mnc" + protocol.Short(endpointID) }

// CreateEndpoint makes the veth pair for one container interface. It never
// echoes an interface field Docker sent; it returns the MAC only when Docker
// sent none.
func (d *Driver) CreateEndpoint(req *api.CreateEndpointRequest) (resp *api.CreateEndpointResponse, retErr error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	n, ok := d.lookupNetwork(req.NetworkID)
	if !ok {
		return nil, protocol.BadRequest("network %s is not a mynet network (unknown id): it may have been removed", protocol.Short(req.NetworkID))
	}
	iface := req.Interface
	if iface == nil {
		iface = &api.EndpointInterface{}
	}
	ep := state.Endpoint{ID: req.EndpointID, NetworkID: req.NetworkID, Created: time.Now().UTC()}
	var err error
	if ep.IPv4, err = parseIfAddr("Address", iface.Address, false, n.rec.IPv4); err != nil {
		return nil, err
	}
	if ep.IPv6, err = parseIfAddr("AddressIPv6", iface.AddressIPv6, true, n.rec.IPv6); err != nil {
		return nil, err
	}
	if old, ok := d.lookupEndpoint(req.EndpointID); ok {
		if old.IPv4 != ep.IPv4 || old.IPv6 != ep.IPv6 {
			return nil, protocol.BadRequest("endpoint %s already exists with address %s %s, not %s %s", protocol.Short(old.ID), old.IPv4, old.IPv6, ep.IPv4, ep.IPv6)
		}
		return &api.CreateEndpointResponse{Interface: d.macResponse(req, old.MAC)}, nil // retried create
	}
	// Docker 28 names the container's interface itself for its own
	// drivers; a remote driver's Join can only answer a prefix.
	if name, _ := req.Options[optIfname].(string); name != "" {
		return nil, protocol.BadRequest("driver option %s=%s: the remote driver protocol cannot name the container's interface (Join returns only a prefix, to which Docker adds a number); set %s on the network instead", optIfname, name, optIfPrefix)
	}
	b := d.backend(n.rec.Backend)
	// Docker sends the port map here too: refuse a bad one before any link
	// exists, not later at ProgramExternalConnectivity.
	ms, err := ports.ParsePortMap(req.Options[optPortMap])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	if !b.publishes() && len(ms) > 0 {
		return nil, protocol.BadRequest("published ports (-p %s) do not apply to %s networks: the container is reachable at its own address; remove -p", ms[0], n.rec.Backend)
	}
	var mac net.HardwareAddr
	if n.rec.Backend == backendIPvlan {
		// ipvlan links share the parent's MAC and cannot take another.
		if userMAC(req) {
			return nil, protocol.BadRequest("ipvlan endpoints share the parent's MAC address: remove --mac-address, or use backend macvlan")
		}
	} else {
		if mac, err = endpointMAC(req, ep.IPv4); err != nil {
			return nil, err
		}
		ep.MAC = mac.String()
	}
	d.reaper.Wait(hostIfName(ep.ID), containerIfName(ep.ID)) // a deleted endpoint's links, if the id comes back
	if err := b.createLink(n.rec, &ep, mac); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, deleteLinks(ep))
		}
	}()
	// Registered first: a dual-stack endpoint is published one address at a
	// time, and a failure after the first must not leave its record behind
	// (withdrawing one never published is a no-op).
	defer func() {
		if retErr != nil {
			d.withdraw(n.rec, ep)
		}
	}()
	if err := d.publish(n.rec, ep); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	if err := d.store.Update(func(tx *state.Tx) error { return tx.PutEndpoint(ep) }); err != nil {
		return nil, fmt.Errorf("save endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	d.mu.Lock()
	d.endpoints[ep.ID] = &ep
	d.mu.Unlock()
	return &api.CreateEndpointResponse{Interface: d.macResponse(req, ep.MAC)}, nil
}

func (d *Driver) macResponse(req *api.CreateEndpointRequest, mac string) *api.EndpointInterface {
	if userMAC(req) || mac == "" {
		return nil // Docker's own value: returning it, even unchanged, fails the call
	}
	return &api.EndpointInterface{MacAddress: mac}
}

// userMAC says whether the user gave a MAC (--mac-address).
func userMAC(req *api.CreateEndpointRequest) bool {
	if req.Interface != nil && req.Interface.MacAddress != "" {
		return true
	}
	s, _ := req.Options[optMAC].(string)
	return s != ""
}

// deleteLinks removes an endpoint's links; missing ones are fine.
func deleteLinks(ep state.Endpoint) error {
	var errs []error
	for _, name := range []string{ep.HostIf, ep.ContainerIf} {
		if name != "" {
			errs = append(errs, link.Delete(name))
		}
	}
	return errors.Join(errs...)
}

// parseIfAddr reads an endpoint address, which must lie in one of the
// network's subnets.
func parseIfAddr(field, s string, v6 bool, subnets []state.Subnet) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Is6() != v6 {
		return p, protocol.BadRequest("Interface.%s %q is not an IPv%s address with prefix length", field, s, map[bool]string{false: "4", true: "6"}[v6])
	}
	var in []string
	for _, sn := range subnets {
		if sn.Pool.Contains(p.Addr()) {
			return p, nil
		}
		in = append(in, sn.Pool.String())
	}
	return p, protocol.BadRequest("Interface.%s %s is outside the network's subnets %v", field, s, in)
}

// endpointMAC is the user's MAC if given, else 02:42 + the IPv4 address like
// Docker's bridge (stable across restarts), else one derived from the id.
func endpointMAC(req *api.CreateEndpointRequest, v4 netip.Prefix) (net.HardwareAddr, error) {
	if req.Interface != nil && req.Interface.MacAddress != "" {
		mac, err := net.ParseMAC(req.Interface.MacAddress)
		if err != nil || len(mac) != 6 {
			return nil, protocol.BadRequest("Interface.MacAddress %q is not a MAC address", req.Interface.MacAddress)
		}
		return mac, nil
	}
	if s, ok := req.Options[optMAC].(string); ok && s != "" {
		if raw, err := base64.StdEncoding.DecodeString(s); err == nil && len(raw) == 6 {
			return net.HardwareAddr(raw), nil
		}
		if mac, err := net.ParseMAC(s); err == nil && len(mac) == 6 {
			return mac, nil
		}
		return nil, protocol.BadRequest("option %s=%q is not a MAC address", optMAC, s)
	}
	if v4.IsValid() {
		b := v4.Addr().As4()
		return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}, nil
	}
	h := sha256.Sum256([]byte(req.EndpointID))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}, nil
}

// Join hands Docker the container end and the gateways. A gateway (or
// DisableGatewayService) is always given, so Docker never adds docker_gwbridge.
func (d *Driver) Join(req *api.JoinRequest) (*api.JoinResponse, error) {
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	n, ok := d.lookupNetwork(req.NetworkID)
	if !ok {
		return nil, protocol.BadRequest("network %s is not a mynet network", protocol.Short(req.NetworkID))
	}
	ep, ok := d.lookupEndpoint(req.EndpointID)
	if !ok {
		return nil, protocol.BadRequest("endpoint %s does not exist on network %s (Join before CreateEndpoint?)", protocol.Short(req.EndpointID), protocol.Short(req.NetworkID))
	}
	if ok, err := link.Exists(ep.ContainerIf); err != nil || !ok {
		return nil, fmt.Errorf("endpoint %s: its interface %s is gone (host rebooted?): %v", protocol.Short(ep.ID), ep.ContainerIf, err)
	}
	resp := &api.JoinResponse{InterfaceName: api.InterfaceName{SrcName: ep.ContainerIf, DstPrefix: n.rec.IfacePrefix}}
	d.backend(n.rec.Backend).join(n.rec, *ep, resp)
	if ep.SandboxKey != req.SandboxKey {
		ep.SandboxKey = req.SandboxKey
		if err := d.saveEndpoint(*ep); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// Leave: Docker moves the interface back itself; nothing to undo here.
func (d *Driver) Leave(req *api.LeaveRequest) error { return nil }

// DeleteEndpoint removes the veth, published ports and the record. Unknown
// endpoints and missing links succeed. With async teardown on, the veth goes
// in the background: Docker has moved the container's end back to the host
// and taken it down by now, so nothing reaches it.
func (d *Driver) DeleteEndpoint(req *api.DeleteEndpointRequest) error {
	return d.deleteEndpoint(req.NetworkID, req.EndpointID, d.asyncTeardown.Load())
}

func (d *Driver) deleteEndpoint(networkID, endpointID string, later bool) error {
	unlock := d.netLock(networkID)
	ep, ok := d.lookupEndpoint(endpointID)
	if !ok {
		unlock()
		return nil
	}
	var rec state.Network
	if n, ok := d.lookupNetwork(ep.NetworkID); ok {
		rec = n.rec
	}
	err := d.forgetEndpoint(rec, *ep)
	unlock()
	d.withdraw(rec, *ep) // etcd round trips outside the lock too
	if later {
		d.flushConntrack(*ep) // before the address can be handed out again
		d.reaper.Delete(ep.HostIf, ep.ContainerIf)
		return err
	}
	// The kernel takes tens of milliseconds to free a veth: do it outside the
	// network's lock so its other endpoints do not queue behind it. A crash
	// here leaves a marked link that the next start removes.
	return errors.Join(err, d.releaseLinks(*ep))
}

// removeEndpoint undoes an endpoint. Callers hold the network's lock.
func (d *Driver) removeEndpoint(n state.Network, ep state.Endpoint) error {
	err := errors.Join(d.forgetEndpoint(n, ep), d.releaseLinks(ep))
	d.withdraw(n, ep)
	return err
}

// forgetEndpoint drops the endpoint's record, then unpublishes its ports:
// after a crash between the two, a start removes rules that no record
// claims, where a record left behind would publish the ports again to
// whichever container gets the address next. Callers hold the network's
// lock.
func (d *Driver) forgetEndpoint(n state.Network, ep state.Endpoint) error {
	if err := d.store.Update(func(tx *state.Tx) error { return tx.DeleteEndpoint(ep.ID) }); err != nil {
		return fmt.Errorf("delete endpoint %s: forget it: %w", protocol.Short(ep.ID), err)
	}
	d.mu.Lock()
	delete(d.endpoints, ep.ID)
	d.mu.Unlock()
	if len(ep.Ports) > 0 && n.ID != "" {
		if err := d.unpublish(n, ep); err != nil {
			return fmt.Errorf("delete endpoint %s: %w", protocol.Short(ep.ID), err)
		}
	}
	return nil
}

// releaseLinks deletes the endpoint's links and its tracked flows.
func (d *Driver) releaseLinks(ep state.Endpoint) error {
	err := deleteLinks(ep)
	d.flushConntrack(ep)
	if err != nil {
		return fmt.Errorf("delete endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	return nil
}

func (d *Driver) saveEndpoint(ep state.Endpoint) error {
	if err := d.store.Update(func(tx *state.Tx) error { return tx.PutEndpoint(ep) }); err != nil {
		return fmt.Errorf("save endpoint %s: %w", protocol.Short(ep.ID), err)
	}
	d.mu.Lock()
	d.endpoints[ep.ID] = &ep
	d.mu.Unlock()
	return nil
}

// EndpointInfo is cheap on purpose: Docker cannot read typed values from a
// remote driver anyway (published ports: see `mynet ports`).
func (d *Driver) EndpointInfo(req *api.InfoRequest) (*api.InfoResponse, error) {
	return &api.InfoResponse{Value: map[string]string{}}, nil
}

// flushConntrack drops tracked flows of the endpoint's addresses, as Docker
// does; a failure (no conntrack netlink in this kernel) only costs stale flows.
func (d *Driver) flushConntrack(ep state.Endpoint) {
	for _, p := range []netip.Prefix{ep.IPv4, ep.IPv6} {
		if p.IsValid() {
			if err := link.FlushConntrack(p.Addr()); err != nil {
				d.log.Warn("flush conntrack", "endpoint", protocol.Short(ep.ID), "err", err)
			}
		}
	}
}
