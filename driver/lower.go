package driver

import (
	"errors"
	"fmt"
	"net"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// lowerBackend: macvlan or ipvlan links on a parent interface. Containers
// sit directly on the parent's LAN: no NAT, no firewall rules of ours.
type lowerBackend struct {
	kind string
	d    *Driver
}

// dummyParent: a network with no parent gets a dummy link of its own, so it
// reaches nothing outside the host.
func dummyParent(rec state.Network) bool { return rec.Options[optParent] == "" }

func (lowerBackend) name(rec *state.Network) {
	if rec.Parent == "" {
		rec.Parent = "mnd" + protocol.Short(rec.ID)
	}
}

func (l lowerBackend) check(rec state.Network, others []state.Network) error {
	for _, o := range others {
		if o.Parent != rec.Parent || o.Backend == backendBridge {
			continue
		}
		switch {
		case o.Backend != rec.Backend:
			return protocol.BadRequest("parent %s is already used by %s network %s: macvlan and ipvlan networks cannot share a parent", rec.Parent, o.Backend, protocol.Short(o.ID))
		case rec.Backend == backendIPvlan && o.Mode != rec.Mode:
			return protocol.BadRequest("parent %s already carries ipvlan mode %s (network %s): every ipvlan network on one parent has the same %s", rec.Parent, o.Mode, protocol.Short(o.ID), optIPvlanMode)
		case rec.Mode == "passthru" || o.Mode == "passthru":
			return protocol.BadRequest("parent %s is already used by network %s: macvlan passthru takes a parent for one network only", rec.Parent, protocol.Short(o.ID))
		}
	}
	return nil
}

func (l lowerBackend) setup(rec *state.Network, others []state.Network, creating bool) (retErr error) {
	if !creating && !rec.ParentCreated {
		if err := awaitLink(rec.Parent, "parent"); err != nil {
			return err
		}
	}
	var created bool
	var err error
	if dummyParent(*rec) {
		created, err = link.EnsureDummy(rec.Parent)
	} else {
		created, err = link.EnsureParent(rec.Parent)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	// A parent we created is shared by every network on it, and removed
	// with the last one, whichever network created it.
	for _, o := range others {
		if creating && o.Parent == rec.Parent && o.ParentCreated {
			rec.ParentCreated = true
		}
	}
	if created {
		l.d.mark(rec.Parent)
		rec.ParentCreated = true
		defer func() {
			if retErr != nil {
				retErr = errors.Join(retErr, link.Delete(rec.Parent))
			}
		}()
	}
	if rec.MTU > 0 {
		pm, err := link.MTU(rec.Parent)
		if err != nil {
			return err
		}
		if rec.MTU > pm {
			return protocol.BadRequest("option %s=%d is larger than the MTU %d of parent %s: give %d or less", optMTU, rec.MTU, pm, rec.Parent, pm)
		}
	}
	return nil
}

func (lowerBackend) teardown(rec state.Network, others []state.Network) error {
	if !rec.ParentCreated {
		return nil
	}
	for _, o := range others {
		if o.Parent == rec.Parent {
			return nil // still in use
		}
	}
	return link.Delete(rec.Parent)
}

func (l lowerBackend) createLink(n state.Network, ep *state.Endpoint, mac net.HardwareAddr) error {
	ep.HostIf, ep.ContainerIf = "", containerIfName(ep.ID)
	lw := link.Lower{Name: ep.ContainerIf, Parent: n.Parent, Kind: l.kind, Mode: n.Mode, Flag: n.Flag, MTU: n.MTU}
	if l.kind == backendMacvlan {
		lw.MAC = mac
	}
	if err := link.CreateLower(lw); err != nil {
		return err
	}
	l.d.mark(ep.ContainerIf)
	return nil
}

// join: L2 modes announce the gateway; L3 modes route everything through the
// interface itself. DisableGatewayService always, so Docker never adds
// docker_gwbridge.
func (lowerBackend) join(n state.Network, ep state.Endpoint, resp *api.JoinResponse) {
	resp.DisableGatewayService = true
	if n.Internal {
		return
	}
	if n.Backend == backendIPvlan && (n.Mode == "l3" || n.Mode == "l3s") {
		resp.StaticRoutes = []*api.StaticRoute{{Destination: "0.0.0.0/0", RouteType: routeConnected}}
		if ep.IPv6.IsValid() {
			resp.StaticRoutes = append(resp.StaticRoutes, &api.StaticRoute{Destination: "::/0", RouteType: routeConnected})
		}
		return
	}
	resp.Gateway, resp.GatewayIPv6 = gateways(n, ep)
}

// routeConnected is libnetwork's CONNECTED route type: bound to the interface.
const routeConnected = 1

// Container links live in the containers; there is nothing on the host to
// put back.
func (lowerBackend) restoreEndpoint(state.Network, state.Endpoint, map[string]string) error {
	return nil
}

// No firewall rules: the containers sit on the parent's LAN as hosts of
// their own, and -p is refused (CreateEndpoint, ProgramExternalConnectivity).
func (lowerBackend) hasRules() bool                                   { return false }
func (lowerBackend) rulesMissing(state.Network, map[string]bool) bool { return false }
func (lowerBackend) addRules(recs []state.Network) []error            { return make([]error, len(recs)) }
func (lowerBackend) publishes() bool                                  { return false }
func (lowerBackend) publish(state.Network, []state.PortBinding) error {
	return errors.New("published ports do not apply to macvlan and ipvlan networks")
}
func (lowerBackend) unpublish(state.Network, []state.PortBinding) error { return nil }
