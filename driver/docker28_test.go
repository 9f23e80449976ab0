package driver

import (
	"net/netip"
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/vishvananda/netlink"
)

// The bridge options Docker 28 added: bad values are named and leave
// nothing; isolated needs --internal, as on Docker's bridge.
func TestDocker28OptionsRefusedClearly(t *testing.T) {
	inNetns(t, func(e *env) {
		cases := []struct {
			opts     map[string]any
			internal bool
			want     string
		}{
			{map[string]any{optGwModeV4: "nat-ish"}, false, optGwModeV4 + `="nat-ish": unknown gateway mode; valid: nat, nat-unprotected, routed or isolated`},
			{map[string]any{optGwModeV6: "NAT"}, false, optGwModeV6},
			{map[string]any{optGwModeV4: "isolated"}, false, "gateway mode isolated can only be used for an internal network"},
			{map[string]any{optGwModeV6: "isolated"}, false, "--internal"},
			{map[string]any{optInhibitV4: "perhaps"}, false, optInhibitV4},
			{map[string]any{optTrustedIfs: "eth1:much-too-long-name0"}, false, optTrustedIfs},
			{map[string]any{optTrustedIfs: "eth1:-j ACCEPT"}, false, optTrustedIfs},
			{map[string]any{optBackend: "macvlan", optGwModeV4: "routed"}, false, "applies to the bridge backend"},
		}
		for _, c := range cases {
			req := netReq(netA, "10.62.0.0/24", "10.62.0.1/24", c.opts)
			req.Options[optInternal] = c.internal
			err := e.d.CreateNetwork(req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("options %v: error %v, want it to contain %q", c.opts, err, c.want)
			}
			if _, err := e.d.GwAllocCheck(&GwAllocCheckRequest{Options: req.Options}); err == nil {
				t.Errorf("options %v: GwAllocCheck accepted them", c.opts)
			}
		}
		e.assertNoLeftovers()
	})
}

// Docker 28 asks before CreateNetwork whether to reserve gateways.
func TestGwAllocCheck(t *testing.T) {
	inNetns(t, func(e *env) {
		if !e.d.GetCapabilities().GwAllocChecker {
			t.Fatal("GwAllocChecker capability not announced")
		}
		cases := []struct {
			generic     map[string]any
			internal    bool
			skip4, skp6 bool
		}{
			{nil, false, false, false},
			{map[string]any{optGwModeV4: "routed", optGwModeV6: "nat-unprotected"}, false, false, false},
			{map[string]any{optGwModeV4: "isolated"}, true, true, false},
			{map[string]any{optGwModeV6: "isolated"}, true, false, true},
			{map[string]any{optInhibitV4: "true"}, false, false, false}, // the gateway lives elsewhere
			{map[string]any{optInhibitV4: "true"}, true, true, false},
		}
		for _, c := range cases {
			r, err := e.d.GwAllocCheck(&GwAllocCheckRequest{Options: map[string]any{optGeneric: c.generic, optInternal: c.internal}})
			if err != nil {
				t.Fatalf("%v internal=%v: %v", c.generic, c.internal, err)
			}
			if r.SkipIPv4 != c.skip4 || r.SkipIPv6 != c.skp6 {
				t.Errorf("%v internal=%v: skip v4=%v v6=%v, want %v %v", c.generic, c.internal, r.SkipIPv4, r.SkipIPv6, c.skip4, c.skp6)
			}
		}
	})
}

// isolated and inhibit_ipv4 keep the gateway off the bridge; isolated also
// announces none in Join. Removing the network removes nothing it did not add.
func TestGatewayOffTheBridge(t *testing.T) {
	inNetns(t, func(e *env) {
		req := netReq(netA, "10.65.0.0/24", "10.65.0.1/24", map[string]any{optGwModeV4: "isolated"})
		req.Options[optInternal] = true
		if err := e.d.CreateNetwork(req); err != nil {
			t.Fatal(err)
		}
		e.createNetwork(netB, "10.66.0.0/24", "10.66.0.1/24", map[string]any{optInhibitV4: "true"})
		for _, br := range []string{"mn-aaaaaaaaaaaa", "mn-bbbbbbbbbbbb"} {
			addrs, err := linkAddrs(br)
			if err != nil {
				t.Fatal(err)
			}
			if len(addrs) != 0 {
				t.Errorf("bridge %s has addresses %v, want none", br, addrs)
			}
		}
		e.createEndpoint(netA, ep1, "10.65.0.2/24")
		j, err := e.d.Join(&api.JoinRequest{NetworkID: netA, EndpointID: ep1, SandboxKey: "/proc/self/ns/net"})
		if err != nil {
			t.Fatal(err)
		}
		if j.Gateway != "" || !j.DisableGatewayService {
			t.Errorf("isolated network: Join gateway %q, DisableGatewayService %v; want none, true", j.Gateway, j.DisableGatewayService)
		}
		const ep2 = "222222222222eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
		e.createEndpoint(netB, ep2, "10.66.0.2/24")
		j, err = e.d.Join(&api.JoinRequest{NetworkID: netB, EndpointID: ep2, SandboxKey: "/proc/self/ns/net"})
		if err != nil {
			t.Fatal(err)
		}
		if j.Gateway != "10.66.0.1" {
			t.Errorf("inhibit_ipv4: Join gateway %q, want 10.66.0.1 (a router on the bridge's LAN)", j.Gateway)
		}
		for _, ep := range []struct{ net, id string }{{netA, ep1}, {netB, ep2}} {
			e.d.Leave(&api.LeaveRequest{NetworkID: ep.net, EndpointID: ep.id})
			if err := e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: ep.net, EndpointID: ep.id}); err != nil {
				t.Fatal(err)
			}
		}
		e.deleteNetworks(netA, netB)
		e.assertNoLeftovers()
	})
}

// Docker 28's --driver-opt com.docker.network.endpoint.ifname cannot be
// honoured by a remote driver: refused with the reason, nothing left.
func TestEndpointIfnameRefused(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.67.0.0/24", "10.67.0.1/24", nil)
		_, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netA, EndpointID: ep1,
			Interface: &api.EndpointInterface{Address: "10.67.0.2/24"},
			Options:   map[string]any{optIfname: "lan7", "com.docker.network.endpoint.sysctls": "net.ipv4.conf.IFNAME.log_martians=1"}})
		if err == nil || !strings.Contains(err.Error(), "cannot name the container's interface") || !strings.Contains(err.Error(), optIfPrefix) {
			t.Fatalf("ifname: %v", err)
		}
		if ok, _ := link.Exists(hostIfName(ep1)); ok {
			t.Error("refused endpoint left its veth")
		}
		// Sysctls alone are Docker's business (it sets them in the container).
		e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netA, EndpointID: ep1,
			Interface: &api.EndpointInterface{Address: "10.67.0.2/24"},
			Options:   map[string]any{"com.docker.network.endpoint.sysctls": "net.ipv4.conf.IFNAME.log_martians=1"}})
		if ok, _ := link.Exists(hostIfName(ep1)); !ok {
			t.Error("endpoint with sysctls only was not created")
		}
	})
}

// linkAddrs are a link's addresses, link-local ones left out.
func linkAddrs(name string) ([]netip.Prefix, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		if ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// Gateway mode routed publishes the container port alone: no host port is
// held, the binding survives a restart, and everything goes away after.
func TestRoutedPublishesContainerPortOnly(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.68.0.0/24", "10.68.0.1/24", map[string]any{optGwModeV4: "routed"})
		e.createEndpoint(netA, ep1, "10.68.0.2/24")
		pm := []any{map[string]any{"Proto": float64(6), "Port": float64(80), "HostPort": float64(28081), "HostPortEnd": float64(28081)}}
		if err := e.d.ProgramExternalConnectivity(&api.ProgramExternalConnectivityRequest{NetworkID: netA, EndpointID: ep1,
			Options: map[string]any{optPortMap: pm}}); err != nil {
			t.Fatal(err)
		}
		if held := e.d.ports.Held(); len(held) != 0 {
			t.Errorf("routed network holds host ports %v, want none", held)
		}
		ep, _ := e.d.lookupEndpoint(ep1)
		if len(ep.Ports) != 1 || ep.Ports[0].HostPort != 0 || ep.Ports[0].ContainerPort != 80 || ep.Ports[0].ContainerIP != netip.MustParseAddr("10.68.0.2") {
			t.Errorf("bindings %v, want 10.68.0.2:80/tcp without a host port", ep.Ports)
		}
		e.restart()
		if ep, ok := e.d.lookupEndpoint(ep1); !ok || len(ep.Ports) != 1 {
			t.Fatalf("endpoint after restart: %v %v", ep, ok)
		}
		if err := e.d.RevokeExternalConnectivity(&api.RevokeExternalConnectivityRequest{NetworkID: netA, EndpointID: ep1}); err != nil {
			t.Fatal(err)
		}
		if err := e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: netA, EndpointID: ep1}); err != nil {
			t.Fatal(err)
		}
		e.deleteNetworks(netA)
		e.assertNoLeftovers()
	})
}
