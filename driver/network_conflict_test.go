package driver

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
	"github.com/vishvananda/netlink"
)

// A CreateNetwork repeated for an existing id: the same effective network
// succeeds and changes nothing; a different one is refused naming the field,
// and leaves the kernel, the rules and the store as they were.

// world is what a create could change: links with their addresses, our
// iptables rules, the store's records and the driver's own view.
func (e *env) world() string {
	e.t.Helper()
	var out []string
	links, err := netlink.LinkList()
	if err != nil {
		e.t.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		flags := a.Flags &^ net.FlagRunning // carrier comes and goes on its own
		line := fmt.Sprintf("link %s type=%s mtu=%d master=%q alias=%q flags=%v mac=%s", a.Name, l.Type(), a.MTU, names[a.MasterIndex], a.Alias, flags, a.HardwareAddr)
		if mv, ok := l.(*netlink.Macvlan); ok {
			line += fmt.Sprintf(" macvlan_mode=%d parent=%s", mv.Mode, names[a.ParentIndex])
		}
		out = append(out, line)
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue // IPv6 link-local addresses appear on their own
			}
			out = append(out, fmt.Sprintf("addr %s %s", a.Name, ad.IPNet))
		}
	}
	out = append(out, ourRuleLines(e.t)...)
	var nets []state.Network
	var eps []state.Endpoint
	if err := e.store.View(func(tx *state.Tx) error {
		var err error
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	memNets, memEps := e.d.Snapshot()
	sort.Slice(memNets, func(i, j int) bool { return memNets[i].ID < memNets[j].ID })
	sort.Slice(memEps, func(i, j int) bool { return memEps[i].ID < memEps[j].ID })
	for name, v := range map[string]any{"store networks": nets, "store endpoints": eps, "driver networks": memNets, "driver endpoints": memEps} {
		b, _ := json.Marshal(v)
		out = append(out, name+" "+string(b))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// unchanged fails when the world moved since before.
func (e *env) unchanged(what, before string) {
	e.t.Helper()
	if after := e.world(); after != before {
		e.t.Errorf("%s changed the world:\n--- before\n%s\n--- after\n%s", what, before, after)
	}
}

func TestCreateNetworkRepeatedWithSameConfigChangesNothing(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.70.0.0/24", "10.70.0.1/24", map[string]any{optICC: "false", optMTU: "1400"})
		before := e.world()
		// The same network asked for in other words: raw options differ,
		// the effective network does not.
		repeats := map[string]*api.CreateNetworkRequest{
			"identical":          netReq(netA, "10.70.0.0/24", "10.70.0.1/24", map[string]any{optICC: "false", optMTU: "1400"}),
			"booleans as JSON":   netReq(netA, "10.70.0.0/24", "10.70.0.1/24", map[string]any{optICC: false, optMTU: float64(1400)}),
			"short MTU key, 0":   netReq(netA, "10.70.0.0/24", "10.70.0.1/24", map[string]any{optICC: "0", optMTUShort: "1400"}),
			"defaults explicit":  netReq(netA, "10.70.0.0/24", "10.70.0.1/24", map[string]any{optICC: "false", optMTU: "1400", optBackend: "bridge", optMasquerade: "true", optBridgeName: "mn-aaaaaaaaaaaa", optIfPrefix: "eth"}),
			"gateway as address": netReq(netA, "10.70.0.0/24", "10.70.0.1", map[string]any{optICC: "false", optMTU: "1400"}),
		}
		for name, req := range repeats {
			if err := e.d.CreateNetwork(req); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			e.unchanged(name, before)
		}
		e.stillWorks(netA, "10.70.0.2/24", "mn-aaaaaaaaaaaa")
	})
}

func TestCreateNetworkRepeatedWithOtherConfigIsRefused(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.71.0.0/24", "10.71.0.1/24", nil)
		before := e.world()
		internal := netReq(netA, "10.71.0.0/24", "10.71.0.1/24", nil)
		internal.Options[optInternal] = true
		ipv6 := netReq(netA, "10.71.0.0/24", "10.71.0.1/24", nil)
		ipv6.Options[optEnableIPv6] = true
		ipv6.IPv6Data = []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: "fd00:71::/64", Gateway: "fd00:71::1/64"}}
		cases := []struct {
			name string
			req  *api.CreateNetworkRequest
			want string
		}{
			{"ICC", netReq(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optICC: "false"}),
				"network aaaaaaaaaaaa already exists with com.docker.network.bridge.enable_icc=true; this request asks for false"},
			{"subnet", netReq(netA, "10.72.0.0/24", "10.72.0.1/24", nil),
				"network aaaaaaaaaaaa already exists with IPv4 pool=10.71.0.0/24; this request asks for 10.72.0.0/24"},
			{"gateway", netReq(netA, "10.71.0.0/24", "10.71.0.254/24", nil),
				"already exists with IPv4 gateway=10.71.0.1/24; this request asks for 10.71.0.254/24"},
			{"internal", internal,
				"already exists with com.docker.network.internal=false; this request asks for true"},
			{"IPv6", ipv6,
				"already exists with IPv6 pool=(unset); this request asks for fd00:71::/64"},
			{"bridge name", netReq(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optBridgeName: "mnother0"}),
				"already exists with com.docker.network.bridge.name=mn-aaaaaaaaaaaa; this request asks for mnother0"},
			{"masquerade", netReq(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optMasquerade: "false"}),
				"com.docker.network.bridge.enable_ip_masquerade=true; this request asks for false"},
			{"MTU", netReq(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optMTU: "1400"}),
				"com.docker.network.driver.mtu=(unset); this request asks for 1400"},
			{"host binding", netReq(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optHostBinding: "127.0.0.1"}),
				"com.docker.network.bridge.host_binding_ipv4=(unset); this request asks for 127.0.0.1"},
			{"backend", netReq(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optBackend: "macvlan", optParent: "mnvethx"}),
				"already exists with backend=bridge; this request asks for macvlan"},
		}
		for _, c := range cases {
			err := e.d.CreateNetwork(c.req)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
			}
			e.unchanged(c.name, before)
		}
		if ok, _ := link.Exists("mnother0"); ok {
			t.Error("a refused repeat left the bridge it asked for")
		}
		e.stillWorks(netA, "10.71.0.2/24", "mn-aaaaaaaaaaaa")
	})
}

func TestMacvlanCreateRepeatedWithOtherModeIsRefused(t *testing.T) {
	inNetns(t, func(e *env) {
		vethParent(t, "lanp8")
		vethParent(t, "lanp9")
		opts := func(extra map[string]any) map[string]any {
			m := map[string]any{optBackend: "macvlan", optParent: "lanp8"}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		e.createNetwork(netA, "10.74.0.0/24", "10.74.0.1/24", opts(nil))
		before := e.world()
		// bridge is the default mode: saying so is the same network.
		if err := e.d.CreateNetwork(netReq(netA, "10.74.0.0/24", "10.74.0.1/24", opts(map[string]any{optMacvlanMode: "bridge"}))); err != nil {
			t.Errorf("default mode given explicitly: %v", err)
		}
		e.unchanged("default mode given explicitly", before)
		cases := []struct {
			name  string
			extra map[string]any
			want  string
		}{
			{"mode", map[string]any{optMacvlanMode: "private"},
				"network aaaaaaaaaaaa already exists with macvlan_mode=bridge; this request asks for private"},
			{"parent", map[string]any{optParent: "lanp9"},
				"already exists with parent=lanp8; this request asks for lanp9"},
			{"MTU", map[string]any{optMTU: "1400"},
				"com.docker.network.driver.mtu=(unset); this request asks for 1400"},
		}
		for _, c := range cases {
			err := e.d.CreateNetwork(netReq(netA, "10.74.0.0/24", "10.74.0.1/24", opts(c.extra)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
			}
			e.unchanged(c.name, before)
		}
		e.createEndpoint(netA, ep1, "10.74.0.2/24")
		l, err := netlink.LinkByName(containerIfName(ep1))
		if err != nil {
			t.Fatal(err)
		}
		if mv, ok := l.(*netlink.Macvlan); !ok || mv.Mode != netlink.MACVLAN_MODE_BRIDGE {
			t.Fatalf("endpoint link after refused repeats: %T %+v", l, l)
		}
		if p, _ := netlink.LinkByIndex(l.Attrs().ParentIndex); p == nil || p.Attrs().Name != "lanp8" {
			t.Fatalf("endpoint link's parent %v, want lanp8", p)
		}
		e.deleteAll(netA, ep1)
		e.assertNoLeftovers()
	})
}

// stillWorks: an endpoint on the network lands on its bridge and joins with
// its gateway; then everything goes and nothing is left.
func (e *env) stillWorks(netID, addr, bridge string) {
	e.t.Helper()
	e.createEndpoint(netID, ep1, addr)
	if m, err := link.Master(hostIfName(ep1)); err != nil || m != bridge {
		e.t.Fatalf("endpoint on %q (%v), want %s", m, err, bridge)
	}
	join, err := e.d.Join(&api.JoinRequest{NetworkID: netID, EndpointID: ep1})
	if err != nil {
		e.t.Fatal(err)
	}
	if gw := strings.TrimSuffix(addr[:strings.LastIndex(addr, ".")], ".") + ".1"; join.Gateway != gw {
		e.t.Fatalf("Join gateway %q, want %s", join.Gateway, gw)
	}
	e.deleteAll(netID, ep1)
	e.assertNoLeftovers()
}
