package driver

import (
	"net"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/state"
)

// backend is the part of a network that differs between the bridge, macvlan
// and ipvlan backends. Records, locking, rollback and restore are shared.
type backend interface {
	// name fills in derived names (bridge, dummy parent) in a new record.
	name(rec *state.Network)
	// check refuses a network that conflicts with the others.
	check(rec state.Network, others []state.Network) error
	// setup makes the kernel match rec and records in rec what it created.
	// Idempotent: restore calls it too. On error it leaves nothing behind.
	setup(rec *state.Network, others []state.Network) error
	// teardown undoes setup; others are the networks that remain.
	teardown(rec state.Network, others []state.Network) error
	// createLink makes the endpoint's link(s); ep.HostIf / ep.ContainerIf name them.
	createLink(n state.Network, ep *state.Endpoint, mac net.HardwareAddr) error
	// join fills in the gateway side of a Join answer.
	join(n state.Network, ep state.Endpoint, resp *api.JoinResponse)
	// restoreEndpoint repairs what a restart can repair for one endpoint.
	restoreEndpoint(n state.Network, ep state.Endpoint) error
	// publishes says whether -p is implemented.
	publishes() bool
}

func (d *Driver) backend(kind string) backend {
	switch kind {
	case backendMacvlan, backendIPvlan:
		return lowerBackend{kind: kind, d: d}
	case backendVXLAN:
		return vxlanBackend{bridgeBackend{d: d}}
	default:
		return bridgeBackend{d: d}
	}
}
