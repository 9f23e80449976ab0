package driver

import (
	"net"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/state"
)

// backend is the part of a network that differs between the bridge, macvlan
// and ipvlan backends. Records, locking, rollback and rebuilding are shared.
type backend interface {
	// name fills in derived names (bridge, dummy parent) in a new record.
	name(rec *state.Network)
	// check refuses a network that conflicts with the others.
	check(rec state.Network, others []state.Network) error
	// setup makes the kernel's links and addresses match rec. Idempotent: a
	// rebuild calls it too. When creating, it records in rec which of the
	// links and addresses it needs it made (mynet's, to remove with the
	// network) and which were there (the user's); a rebuild keeps what the
	// create recorded. On error it leaves nothing behind. Firewall rules
	// come after, from addRules.
	setup(rec *state.Network, others []state.Network, creating bool) error
	// teardown undoes setup and addRules; others are the networks that remain.
	teardown(rec state.Network, others []state.Network) error
	// createLink makes the endpoint's link(s); ep.HostIf / ep.ContainerIf name them.
	createLink(n state.Network, ep *state.Endpoint, mac net.HardwareAddr) error
	// join fills in the gateway side of a Join answer.
	join(n state.Network, ep state.Endpoint, resp *api.JoinResponse)
	// restoreEndpoint repairs what can be repaired from the host for one
	// endpoint. masters, when not nil, is every link's master from one dump.
	restoreEndpoint(n state.Network, ep state.Endpoint, masters map[string]string) error

	// Firewall rules: NAT, isolation and published ports. Only the bridge
	// backend has any; for macvlan and ipvlan these have nothing to do.

	// hasRules says whether networks of this backend have firewall rules.
	hasRules() bool
	// rulesMissing says whether rec's rules are absent from present, the
	// bridges whose rules the firewall holds.
	rulesMissing(rec state.Network, present map[string]bool) bool
	// addRules programs the rules of networks of this backend (idempotent),
	// returning one error or nil per network.
	addRules(recs []state.Network) []error
	// publishes says whether -p is implemented.
	publishes() bool
	// publish and unpublish add and remove the rules of published ports.
	publish(n state.Network, bs []state.PortBinding) error
	unpublish(n state.Network, bs []state.PortBinding) error
}

// backendToDelete is the backend DeleteNetwork tears a network down with:
// with async teardown on, a bridge of ours is taken down and deleted in the
// background. Rollbacks use backend, so a failed create leaves nothing
// behind by the time it answers.
func (d *Driver) backendToDelete(kind string) backend {
	switch b := d.backend(kind).(type) {
	case bridgeBackend:
		b.later = d.asyncTeardown.Load()
		return b
	case vxlanBackend:
		b.later = d.asyncTeardown.Load()
		return b
	default:
		return b
	}
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
