//go:build umltest

// These tests need ipvlan, dummy and 802.1q links, which the development
// host's kernel lacks: `make test` compiles them with -tags umltest and runs
// them inside Debian's user-mode Linux kernel (integration/uml/run.sh).
package driver

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const ep2 = "222222222222eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

func dummyLink(t *testing.T, name string) {
	t.Helper()
	if _, err := link.EnsureDummy(name); err != nil {
		t.Fatal(err)
	}
}

// sandbox moves an endpoint's container link into a new namespace, names it
// eth0, gives it its address and routes as Docker would, and returns the
// namespace, closed when the test ends.
func sandbox(t *testing.T, ifname, cidr string, join *api.JoinResponse) netns.NsHandle {
	t.Helper()
	host, _ := netns.Get()
	defer host.Close()
	ns, err := netns.New() // switches this thread
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	netns.Set(host)
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		t.Fatal(err)
	}
	netns.Set(ns)
	defer netns.Set(host)
	l, _ = netlink.LinkByName(ifname)
	netlink.LinkSetName(l, "eth0")
	addr, _ := netlink.ParseAddr(cidr)
	if err := netlink.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(l)
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	for _, r := range join.StaticRoutes {
		dst, _ := netlink.ParseIPNet(r.Destination)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatalf("route %s: %v", r.Destination, err)
		}
	}
	return ns
}

// ping runs busybox ping inside ns (exec inherits this thread's namespace)
// and fails the test if ip does not answer.
func ping(t *testing.T, ns netns.NsHandle, ip string) {
	t.Helper()
	host, _ := netns.Get()
	defer host.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(host)
	if out, err := exec.Command("/bin/busybox", "ping", "-c", "1", "-W", "2", ip).CombinedOutput(); err != nil {
		t.Fatalf("ping %s: %v: %s", ip, err, out)
	}
}

func (e *env) endpointInSandbox(netID, epID, cidr string) netns.NsHandle {
	e.t.Helper()
	e.createEndpoint(netID, epID, cidr)
	join, err := e.d.Join(&api.JoinRequest{NetworkID: netID, EndpointID: epID})
	if err != nil {
		e.t.Fatal(err)
	}
	return sandbox(e.t, containerIfName(epID), cidr, join)
}

func TestUMLIPvlanL2EndpointsReachEachOther(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan0")
		e.createNetwork(netA, "10.81.0.0/24", "10.81.0.1/24", map[string]any{optBackend: "ipvlan", optParent: "lan0"})
		a := e.endpointInSandbox(netA, ep1, "10.81.0.2/24")
		b := e.endpointInSandbox(netA, ep2, "10.81.0.3/24")
		ping(t, a, "10.81.0.3")
		ping(t, b, "10.81.0.2")
	})
}

func TestUMLIPvlanL3RoutesAndNoGateway(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan1")
		e.createNetwork(netA, "10.82.0.0/24", "10.82.0.1/24", map[string]any{optBackend: "ipvlan", optParent: "lan1", optIPvlanMode: "l3"})
		e.createEndpoint(netA, ep1, "10.82.0.2/24")
		join, err := e.d.Join(&api.JoinRequest{NetworkID: netA, EndpointID: ep1})
		if err != nil {
			t.Fatal(err)
		}
		if join.Gateway != "" || !join.DisableGatewayService || len(join.StaticRoutes) != 1 ||
			join.StaticRoutes[0].Destination != "0.0.0.0/0" || join.StaticRoutes[0].RouteType != routeConnected {
			t.Fatalf("L3 join %+v routes %+v", join, join.StaticRoutes)
		}
		l, _ := netlink.LinkByName(containerIfName(ep1))
		if iv, ok := l.(*netlink.IPVlan); !ok || iv.Mode != netlink.IPVLAN_MODE_L3 {
			t.Fatalf("link %T %+v", l, l)
		}
		a := sandbox(t, containerIfName(ep1), "10.82.0.2/24", join)
		e.endpointInSandbox(netA, ep2, "10.82.0.3/24")
		ping(t, a, "10.82.0.3")
	})
}

func TestUMLIPvlanRefusesMACAndOtherModeOnSameParent(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan2")
		e.createNetwork(netA, "10.83.0.0/24", "10.83.0.1/24", map[string]any{optBackend: "ipvlan", optParent: "lan2"})
		_, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netA, EndpointID: ep1,
			Interface: &api.EndpointInterface{Address: "10.83.0.2/24", MacAddress: "02:11:22:33:44:55"}})
		if err == nil || !strings.Contains(err.Error(), "MAC") {
			t.Fatalf("user MAC on ipvlan: %v", err)
		}
		r := e.createEndpoint(netA, ep2, "10.83.0.3/24")
		if r.Interface != nil {
			t.Fatalf("ipvlan endpoint answered a MAC: %+v", r.Interface)
		}
		err = e.d.CreateNetwork(netReq(netB, "10.84.0.0/24", "10.84.0.1/24", map[string]any{optBackend: "ipvlan", optParent: "lan2", optIPvlanMode: "l3"}))
		if err == nil || !strings.Contains(err.Error(), "ipvlan_mode") {
			t.Fatalf("second mode on one parent: %v", err)
		}
	})
}

func TestUMLNoParentCreatesAndRemovesDummy(t *testing.T) {
	for _, backend := range []string{"macvlan", "ipvlan"} {
		inNetns(t, func(e *env) {
			e.createNetwork(netA, "10.85.0.0/24", "10.85.0.1/24", map[string]any{optBackend: backend})
			l, err := netlink.LinkByName("mnd" + netA[:12])
			if err != nil || l.Type() != "dummy" {
				t.Fatalf("%s: dummy parent: %v %v", backend, err, l)
			}
			e.createEndpoint(netA, ep1, "10.85.0.2/24")
			e.deleteAll(netA, ep1)
			if ok, _ := link.Exists("mnd" + netA[:12]); ok {
				t.Fatalf("%s: dummy parent left", backend)
			}
		})
	}
}

// A missing NAME.VID parent is created, shared by the networks on it and
// removed with the last of them; an existing one is never removed.
func TestUMLVLANParentRefcount(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan3")
		opts := map[string]any{optBackend: "macvlan", optParent: "lan3.10"}
		e.createNetwork(netA, "10.86.0.0/24", "10.86.0.1/24", opts)
		l, err := netlink.LinkByName("lan3.10")
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := l.(*netlink.Vlan); !ok || v.VlanId != 10 {
			t.Fatalf("parent %T %+v", l, l)
		}
		e.createNetwork(netB, "10.87.0.0/24", "10.87.0.1/24", opts)
		e.deleteNetworks(netA)
		if ok, _ := link.Exists("lan3.10"); !ok {
			t.Fatal("VLAN removed while network B still uses it")
		}
		// restart on a host that lost the VLAN: it comes back
		link.Delete("lan3.10")
		e.restart()
		if ok, _ := link.Exists("lan3.10"); !ok {
			t.Fatal("restart did not re-create the VLAN parent")
		}
		e.deleteNetworks(netB)
		if ok, _ := link.Exists("lan3.10"); ok {
			t.Fatal("VLAN left after its last network")
		}
		// an existing VLAN is used and kept
		if _, err := link.EnsureParent("lan3.20"); err != nil {
			t.Fatal(err)
		}
		e.createNetwork(netA, "10.86.0.0/24", "10.86.0.1/24", map[string]any{optBackend: "ipvlan", optParent: "lan3.20"})
		e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: netA})
		e.assertOnlyParentLeft("lan3.20")
	})
}

// A VLAN parent made by a create that then fails is removed again.
func TestUMLFailedCreateRemovesTheVLANItMade(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan5")
		err := e.d.CreateNetwork(netReq(netA, "10.90.0.0/24", "10.90.0.1/24",
			map[string]any{optBackend: "macvlan", optParent: "lan5.30", optMTU: "9000"}))
		if err == nil || !strings.Contains(err.Error(), "larger than the MTU") {
			t.Fatalf("create: %v", err)
		}
		if ok, _ := link.Exists("lan5.30"); ok {
			t.Fatal("the VLAN made by the failed create was left behind")
		}
	})
}

// A user's VLAN parent missing at a start is the user's to create: mynet
// waits for it, sets the network up again once it is back, and never
// removes it.
func TestUMLUserVLANParentMissingAtStartIsAwaited(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan6")
		userVLAN := func() {
			t.Helper()
			base, _ := netlink.LinkByName("lan6")
			if err := netlink.LinkAdd(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "lan6.40", ParentIndex: base.Attrs().Index}, VlanId: 40}); err != nil {
				t.Fatal(err)
			}
		}
		userVLAN()
		e.createNetwork(netA, "10.88.0.0/24", "10.88.0.1/24", map[string]any{optBackend: "macvlan", optParent: "lan6.40"})
		link.Delete("lan6.40")
		e.restart()
		if ok, _ := link.Exists("lan6.40"); ok {
			t.Fatalf("the start created the user's VLAN (alias %q)", link.Alias("lan6.40"))
		}
		userVLAN() // the network configuration comes up
		e.d.repairFirewall()
		if got := e.repaired(); got[RepairLinks] != 1 {
			t.Errorf("OnRepair heard %v, want one links repair once the VLAN is back", got)
		}
		e.createEndpoint(netA, ep1, "10.88.0.2/24")
		e.deleteNetworks(netA)
		if ok, _ := link.Exists("lan6.40"); !ok {
			t.Fatal("docker network rm removed the user's VLAN")
		}
	})
}

// A VLAN parent mynet made whose base interface is missing at a start is
// tried again at each periodic check, not given up on.
func TestUMLMissingParentIsRetried(t *testing.T) {
	inNetns(t, func(e *env) {
		dummyLink(t, "lan7")
		e.createNetwork(netA, "10.89.0.0/24", "10.89.0.1/24", map[string]any{optBackend: "macvlan", optParent: "lan7.50"})
		link.Delete("lan7") // takes lan7.50 with it
		e.restart()
		e.d.repairFirewall()
		if ok, _ := link.Exists("lan7.50"); ok {
			t.Fatal("lan7.50 exists without lan7")
		}
		dummyLink(t, "lan7")
		e.d.repairFirewall()
		if ok, _ := link.Exists("lan7.50"); !ok {
			t.Fatal("the periodic check did not make the VLAN parent once its interface was back")
		}
		if got := e.repaired(); got[RepairLinks] != 1 {
			t.Errorf("OnRepair heard %v, want one links repair", got)
		}
		e.deleteNetworks(netA)
		if ok, _ := link.Exists("lan7.50"); ok {
			t.Fatal("the VLAN mynet made stayed after its last network")
		}
		link.Delete("lan7")
		e.assertNoLeftovers()
	})
}
