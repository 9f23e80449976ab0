package driver

import (
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/vishvananda/netlink"
)

// These run on any kernel with macvlan and veth; the ipvlan, dummy and VLAN
// tests are in lower_uml_test.go and run inside user-mode Linux.

// vethParent makes a veth pair to serve as a LAN parent (never eth0).
func vethParent(t *testing.T, name string) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = 1500
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, name + "p"} {
		if err := link.SetUp(n); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMacvlanNetworkAndEndpoint(t *testing.T) {
	inNetns(t, func(e *env) {
		vethParent(t, "lanp0")
		e.createNetwork(netA, "10.72.0.0/24", "10.72.0.1/24", map[string]any{optBackend: "macvlan", optParent: "lanp0"})
		resp := e.createEndpoint(netA, ep1, "10.72.0.2/24")
		if resp.Interface == nil || resp.Interface.MacAddress != "02:42:0a:48:00:02" {
			t.Fatalf("MAC answer %+v", resp.Interface)
		}
		l, err := netlink.LinkByName(containerIfName(ep1))
		if err != nil {
			t.Fatal(err)
		}
		mv, ok := l.(*netlink.Macvlan)
		if !ok || mv.Mode != netlink.MACVLAN_MODE_BRIDGE || l.Attrs().HardwareAddr.String() != "02:42:0a:48:00:02" {
			t.Fatalf("link %T %+v", l, l.Attrs())
		}
		join, err := e.d.Join(&api.JoinRequest{NetworkID: netA, EndpointID: ep1})
		if err != nil {
			t.Fatal(err)
		}
		if join.Gateway != "10.72.0.1" || !join.DisableGatewayService || join.InterfaceName.SrcName != containerIfName(ep1) {
			t.Fatalf("join %+v", join)
		}
		if _, err := link.Master(containerIfName(ep1)); err != nil {
			t.Fatal(err)
		}
		e.deleteAll(netA, ep1)
		e.assertOnlyParentLeft("lanp0")
	})
}

func TestMacvlanPrivateModeAndMTU(t *testing.T) {
	inNetns(t, func(e *env) {
		vethParent(t, "lanp1")
		e.createNetwork(netA, "10.73.0.0/24", "10.73.0.1/24",
			map[string]any{optBackend: "macvlan", optParent: "lanp1", optMacvlanMode: "private", optMTU: "1400"})
		e.createEndpoint(netA, ep1, "10.73.0.2/24")
		l, _ := netlink.LinkByName(containerIfName(ep1))
		if mv, ok := l.(*netlink.Macvlan); !ok || mv.Mode != netlink.MACVLAN_MODE_PRIVATE || l.Attrs().MTU != 1400 {
			t.Fatalf("link %+v", l)
		}
	})
}

func TestLowerBackendsRefuseBadInput(t *testing.T) {
	inNetns(t, func(e *env) {
		vethParent(t, "lanp2")
		cases := []struct {
			opts map[string]any
			want string
		}{
			{map[string]any{optBackend: "macvlan", optParent: "nosuch0"}, "nosuch0 does not exist"},
			{map[string]any{optBackend: "macvlan", optParent: "lo"}, "loopback"},
			{map[string]any{optBackend: "macvlan", optParent: "lanp2.5000"}, "1 to 4094"},
			{map[string]any{optBackend: "macvlan", optParent: "nosuch0.10"}, "nosuch0 does not exist"},
			{map[string]any{optBackend: "macvlan", optParent: "lanp2", optMacvlanMode: "l2"}, optMacvlanMode},
			{map[string]any{optBackend: "macvlan", optParent: "lanp2", optIPvlanMode: "l2"}, "applies to the ipvlan backend"},
			{map[string]any{optBackend: "macvlan", optParent: "lanp2", optICC: "false"}, "applies to the bridge and vxlan backend"},
			{map[string]any{optBackend: "ipvlan", optParent: "lanp2", optIPvlanMode: "l4"}, optIPvlanMode},
			{map[string]any{optBackend: "ipvlan", optParent: "lanp2", optIPvlanFlag: "loud"}, optIPvlanFlag},
			{map[string]any{optParent: "lanp2"}, "applies to the macvlan and ipvlan backend"},
			{map[string]any{optBackend: "macvlan", optParent: "lanp2", optMTU: "9000"}, "larger than the MTU 1500"},
			{map[string]any{optBackend: "macvlan", optParent: "-j ACCEPT"}, optParent},
		}
		for _, c := range cases {
			err := e.d.CreateNetwork(netReq(netA, "10.74.0.0/24", "10.74.0.1/24", c.opts))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("options %v: error %v, want it to mention %q", c.opts, err, c.want)
			}
		}
		e.assertNoLeftovers()
		names, _ := link.Names()
		for _, n := range names {
			if strings.Contains(n, ".") {
				t.Fatalf("a refused network left %s", n)
			}
		}
	})
}

func TestMacvlanRefusesPublishedPortsAndPassthruSharing(t *testing.T) {
	inNetns(t, func(e *env) {
		vethParent(t, "lanp3")
		e.createNetwork(netA, "10.75.0.0/24", "10.75.0.1/24", map[string]any{optBackend: "macvlan", optParent: "lanp3"})
		pm := []any{map[string]any{"Proto": float64(6), "Port": float64(80), "HostPort": float64(28081)}}
		_, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netA, EndpointID: ep1,
			Interface: &api.EndpointInterface{Address: "10.75.0.2/24"}, Options: map[string]any{optPortMap: pm}})
		if err == nil || !strings.Contains(err.Error(), "published ports") {
			t.Fatalf("-p on macvlan: %v", err)
		}
		if ok, _ := link.Exists(containerIfName(ep1)); ok {
			t.Fatal("refused endpoint left its link")
		}
		err = e.d.CreateNetwork(netReq(netB, "10.76.0.0/24", "10.76.0.1/24", map[string]any{optBackend: "macvlan", optParent: "lanp3", optMacvlanMode: "passthru"}))
		if err == nil || !strings.Contains(err.Error(), "passthru") {
			t.Fatalf("passthru on a shared parent: %v", err)
		}
		err = e.d.CreateNetwork(netReq(netB, "10.76.0.0/24", "10.76.0.1/24", map[string]any{optBackend: "ipvlan", optParent: "lanp3"}))
		if err == nil || !strings.Contains(err.Error(), "cannot share a parent") {
			t.Fatalf("ipvlan on a macvlan parent: %v", err)
		}
	})
}

// deleteAll removes one endpoint and its network, twice (deletes are idempotent).
func (e *env) deleteAll(netID, epID string) {
	e.t.Helper()
	for i := 0; i < 2; i++ {
		if err := e.d.Leave(&api.LeaveRequest{NetworkID: netID, EndpointID: epID}); err != nil {
			e.t.Fatal(err)
		}
		if err := e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: netID, EndpointID: epID}); err != nil {
			e.t.Fatal(err)
		}
	}
	e.deleteNetworks(netID, netID)
}

// assertOnlyParentLeft fails the test unless the parent link, which the
// user made, is still there and nothing of ours is.
func (e *env) assertOnlyParentLeft(parent string) {
	e.t.Helper()
	if ok, _ := link.Exists(parent); !ok {
		e.t.Fatalf("parent %s, which mynet did not create, was removed", parent)
	}
	e.assertNoLeftovers()
}

// deleteNetworks deletes each network in turn and fails the test on an error.
func (e *env) deleteNetworks(ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		if err := e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: id}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func TestInternalMacvlanHasNoGateway(t *testing.T) {
	inNetns(t, func(e *env) {
		vethParent(t, "lanp4")
		req := netReq(netA, "10.77.0.0/24", "10.77.0.1/24", map[string]any{optBackend: "macvlan", optParent: "lanp4"})
		req.Options[optInternal] = true
		if err := e.d.CreateNetwork(req); err != nil {
			t.Fatal(err)
		}
		e.createEndpoint(netA, ep1, "10.77.0.2/24")
		join, err := e.d.Join(&api.JoinRequest{NetworkID: netA, EndpointID: ep1})
		if err != nil {
			t.Fatal(err)
		}
		if join.Gateway != "" || !join.DisableGatewayService || len(join.StaticRoutes) != 0 {
			t.Fatalf("internal macvlan join %+v", join)
		}
	})
}
