package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/cluster/etcdtest"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// These tests run two simulated hosts, each a fresh network namespace with
// its own state file, driver and cluster client, joined by a veth pair (the
// underlay), against a real etcd. Every kernel call runs on one locked
// thread that switches between the hosts' namespaces; the etcd clients talk
// over the test process's own loopback from other threads.

// vxHost is one simulated host.
type vxHost struct {
	t     *testing.T
	name  string
	ns    netns.NsHandle
	addr  netip.Addr // underlay address (the VTEP)
	path  string
	store *state.Store
	cl    *cluster.Client
	view  *cluster.View
	d     *Driver
	nets  map[netip.Prefix]string // subnet -> cluster network (what the IPAM would answer)
	stop  context.CancelFunc
}

// enter switches the calling (locked) thread into the host's namespace.
func (h *vxHost) enter() {
	h.t.Helper()
	if err := netns.Set(h.ns); err != nil {
		h.t.Fatal(err)
	}
}

// underlay makes two namespaces joined by a veth pair, 192.0.2.1 and
// 192.0.2.2, MTU 1500. The calling thread ends in the first.
func underlay(t *testing.T) (a, b netns.NsHandle) {
	t.Helper()
	var err error
	if b, err = netns.New(); err != nil {
		t.Fatal(err)
	}
	if a, err = netns.New(); err != nil {
		t.Fatal(err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU = "ul0", 1500
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "ul1"}); err != nil {
		t.Fatal(err)
	}
	peer, _ := netlink.LinkByName("ul1")
	if err := netlink.LinkSetNsFd(peer, int(b)); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		ns   netns.NsHandle
		name string
		cidr string
	}{{a, "ul0", "192.0.2.1/24"}, {b, "ul1", "192.0.2.2/24"}} {
		netns.Set(side.ns)
		l, _ := netlink.LinkByName(side.name)
		addr, _ := netlink.ParseAddr(side.cidr)
		if err := netlink.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		netlink.LinkSetUp(l)
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
	}
	netns.Set(a)
	return a, b
}

func newVXHost(t *testing.T, srv *etcdtest.Server, name string, ns netns.NsHandle, addr string) *vxHost {
	t.Helper()
	h := &vxHost{t: t, name: name, ns: ns, addr: netip.MustParseAddr(addr), path: filepath.Join(t.TempDir(), name+".db"), nets: map[netip.Prefix]string{}}
	h.start(srv)
	t.Cleanup(func() { h.close() })
	return h
}

func (h *vxHost) start(srv *etcdtest.Server) {
	h.t.Helper()
	h.enter()
	s, err := state.Open(h.path, state.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if h.cl == nil {
		h.cl, err = cluster.Open(cluster.Config{Endpoints: srv.Endpoints(), HostID: h.name, Advertise: h.addr,
			Prefix: "/t/" + h.t.Name() + "/", Log: quiet})
		if err != nil {
			h.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.view, h.stop = cluster.NewView(), cancel
	go h.cl.Follow(ctx, h.view)
	fw, err := firewall.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	d, err := New(Config{Store: s, Firewall: fw, Log: quiet, Cluster: &Cluster{Client: h.cl, View: h.view,
		NetworkOf: func(p netip.Prefix) (string, bool) { n, ok := h.nets[p]; return n, ok }}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.store, h.d = s, d
}

// restart is a plugin restart on the same state file and namespace.
func (h *vxHost) restart(srv *etcdtest.Server) {
	h.t.Helper()
	h.stop()
	h.store.Close()
	h.start(srv)
}

func (h *vxHost) close() {
	h.stop()
	h.store.Close()
	h.cl.Close()
}

// pool is what the IPAM does for --ipam-opt network=name: join in etcd.
func (h *vxHost) pool(name, subnet string) {
	h.t.Helper()
	p := netip.MustParsePrefix(subnet)
	if _, _, err := h.cl.Join(context.Background(), cluster.PoolSpec{Name: name, V6: p.Addr().Is6(), Subnet: p}); err != nil {
		h.t.Fatal(err)
	}
	h.nets[p] = name
}

// claim is the IPAM's RequestAddress.
func (h *vxHost) claim(name, ip string) {
	h.t.Helper()
	if _, err := h.cl.Claim(context.Background(), name, netip.MustParseAddr(ip), cluster.KindEndpoint); err != nil {
		h.t.Fatal(err)
	}
}

// container makes an endpoint, joins it and moves its link into a new
// namespace set up as Docker would (eth0, addresses, default routes); cidr6,
// if given, is its IPv6 address.
func (h *vxHost) container(netID, epID, cidr string, cidr6 ...string) netns.NsHandle {
	h.t.Helper()
	h.enter()
	iface := &api.EndpointInterface{Address: cidr}
	if len(cidr6) > 0 {
		iface.AddressIPv6 = cidr6[0]
	}
	if _, err := h.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netID, EndpointID: epID,
		Interface: iface, Options: map[string]any{}}); err != nil {
		h.t.Fatalf("%s: CreateEndpoint: %v", h.name, err)
	}
	join, err := h.d.Join(&api.JoinRequest{NetworkID: netID, EndpointID: epID})
	if err != nil {
		h.t.Fatal(err)
	}
	ns, err := netns.New() // switches this thread
	if err != nil {
		h.t.Fatal(err)
	}
	h.enter()
	l, err := netlink.LinkByName(containerIfName(epID))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		h.t.Fatal(err)
	}
	netns.Set(ns)
	defer h.enter()
	l, _ = netlink.LinkByName(containerIfName(epID))
	netlink.LinkSetName(l, "eth0")
	addr, _ := netlink.ParseAddr(cidr)
	if err := netlink.AddrAdd(l, addr); err != nil {
		h.t.Fatal(err)
	}
	netlink.LinkSetUp(l)
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	gw := net.ParseIP(join.Gateway)
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
		h.t.Fatalf("default route via %s: %v", join.Gateway, err)
	}
	if len(cidr6) > 0 {
		addr6, _ := netlink.ParseAddr(cidr6[0])
		addr6.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(l, addr6); err != nil {
			h.t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(join.GatewayIPv6)}); err != nil {
			h.t.Fatalf("default route via %s: %v", join.GatewayIPv6, err)
		}
	}
	return ns
}

// vxPing pings from inside ns (exec inherits this thread's namespace).
func vxPing(t *testing.T, ns netns.NsHandle, ip string, size int) error {
	t.Helper()
	cur, _ := netns.Get()
	defer func() { netns.Set(cur); cur.Close() }()
	netns.Set(ns)
	out, err := exec.Command("/bin/busybox", "ping", "-c", "2", "-W", "2", "-s", fmt.Sprint(size), ip).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s: %v: %s", ip, err, out)
	}
	return nil
}

// waitRemote waits until h's view has ip on name, then programs h's kernel.
func (h *vxHost) waitRemote(name, ip string, present bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	a := netip.MustParseAddr(ip)
	for {
		if _, ok := h.view.Network(name)[a]; ok == present {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: %s never %s in the view of %s", h.name, ip, map[bool]string{true: "appeared", false: "left"}[present], name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.enter()
	h.d.SyncDataPlane()
}

// deleteVXNetworks deletes network vxNetA on a and vxNetB on b: no link of
// ours may be left on either.
func deleteVXNetworks(t *testing.T, a, b *vxHost) {
	t.Helper()
	for _, x := range []struct {
		h  *vxHost
		id string
	}{{a, vxNetA}, {b, vxNetB}} {
		x.h.enter()
		if err := x.h.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: x.id}); err != nil {
			t.Fatal(err)
		}
		if names, _ := link.Names(); strings.Contains(strings.Join(names, " "), "mn") {
			t.Errorf("%s: links left: %v", x.h.name, names)
		}
	}
}

// inLockedThread runs fn on a locked thread that dies with it (the
// namespaces it entered die with it too).
func inLockedThread(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		fn()
	}()
	<-done
}

const (
	vxNetA = "a1a1a1a1a1a1000000000000000000000000000000000000000000000000000a"
	vxNetB = "b2b2b2b2b2b2000000000000000000000000000000000000000000000000000b"
	vxEpA  = "e1e1e1e1e1e1000000000000000000000000000000000000000000000000000a"
	vxEpB  = "e2e2e2e2e2e2000000000000000000000000000000000000000000000000000b"
)

func TestVXLANTwoHostsShareOneSegment(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	inLockedThread(t, func() {
		nsA, nsB := underlay(t)
		a, b := newVXHost(t, srv, "hosta", nsA, "192.0.2.1"), newVXHost(t, srv, "hostb", nsB, "192.0.2.2")
		vx := map[string]any{optBackend: backendVXLAN}
		for _, x := range []struct {
			h  *vxHost
			id string
		}{{a, vxNetA}, {b, vxNetB}} {
			x.h.pool("blue", "10.90.0.0/24")
			x.h.enter()
			if err := x.h.d.CreateNetwork(netReq(x.id, "10.90.0.0/24", "10.90.0.1/24", vx)); err != nil {
				t.Fatalf("%s: CreateNetwork: %v", x.h.name, err)
			}
		}
		a.enter()
		dev, err := netlink.LinkByName(vxlanName(vxNetA))
		if err != nil {
			t.Fatal(err)
		}
		x, ok := dev.(*netlink.Vxlan)
		if !ok || x.Learning || !x.Proxy || x.L2miss || x.L3miss || x.Port != DefaultVXLANPort || x.VxlanId != cluster.FirstVNI ||
			!x.SrcAddr.Equal(net.ParseIP("192.0.2.1")) || x.MTU != 1450 {
			t.Fatalf("VXLAN device %+v", dev)
		}
		br, _ := netlink.LinkByName("mn-" + protocol.Short(vxNetA))
		if br.Attrs().MTU != 1450 || x.MasterIndex != br.Attrs().Index {
			t.Fatalf("bridge MTU %d, VXLAN device master %d (bridge %d)", br.Attrs().MTU, x.MasterIndex, br.Attrs().Index)
		}

		a.claim("blue", "10.90.0.2")
		b.claim("blue", "10.90.0.3")
		ca := a.container(vxNetA, vxEpA, "10.90.0.2/24")
		cb := b.container(vxNetB, vxEpB, "10.90.0.3/24")
		a.enter()
		if veth, _ := netlink.LinkByName(hostIfName(vxEpA)); veth.Attrs().MTU != 1450 {
			t.Errorf("host veth MTU %d, want 1450", veth.Attrs().MTU)
		}
		// Nothing is learned or flooded: before the entries are programmed
		// from etcd, the other host is unreachable.
		if err := vxPing(t, ca, "10.90.0.3", 56); err == nil {
			t.Fatal("a reached b before any entry was programmed: VXLAN floods or learns")
		}
		a.waitRemote("blue", "10.90.0.3", true)
		b.waitRemote("blue", "10.90.0.2", true)

		a.enter()
		remotes, _, err := link.Remotes(vxlanName(vxNetA))
		if err != nil || len(remotes) != 1 || remotes[netip.MustParseAddr("10.90.0.3")] != (link.Remote{IP: netip.MustParseAddr("10.90.0.3"), MAC: "02:42:0a:5a:00:03", VTEP: netip.MustParseAddr("192.0.2.2")}) {
			t.Fatalf("host a's entries: %+v, %v", remotes, err)
		}
		if err := vxPing(t, ca, "10.90.0.3", 56); err != nil {
			t.Fatalf("a -> b: %v", err)
		}
		if err := vxPing(t, cb, "10.90.0.2", 1400); err != nil { // close to the 1450 MTU
			t.Fatalf("b -> a, large: %v", err)
		}
		if err := vxPing(t, ca, "10.90.0.1", 56); err != nil { // the gateway on a's own bridge
			t.Fatalf("a -> gateway: %v", err)
		}

		// An entry deleted by hand: mynet doctor finds it, --fix (and the
		// next sync alike) puts it back.
		a.enter()
		if err := link.DelRemote(vxlanName(vxNetA), netip.MustParseAddr("10.90.0.3"), "", netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		for _, fix := range []drift.Fix{nil, drift.FixAll} {
			drifts := a.d.Doctor(drift.View{}, false, fix, 0)
			if len(drifts) != 1 || drifts[0].Kind != drift.ClusterDataPlane || drifts[0].Fixed != (fix != nil) {
				t.Fatalf("doctor (fix=%v) found %+v", fix != nil, drifts)
			}
		}
		if r, _, _ := link.Remotes(vxlanName(vxNetA)); len(r) != 1 {
			t.Fatalf("entries after doctor --fix: %+v", r)
		}
		if drifts := a.d.Doctor(drift.View{}, false, nil, 0); len(drifts) != 0 {
			t.Fatalf("doctor after --fix: %+v", drifts)
		}
		// A record withdrawn behind the driver's back is published again.
		if err := a.cl.Withdraw(context.Background(), "blue", netip.MustParseAddr("10.90.0.2")); err != nil {
			t.Fatal(err)
		}
		b.waitRemote("blue", "10.90.0.2", false)
		a.waitRemote("blue", "10.90.0.2", false)
		a.d.ReconcileEndpoints(context.Background(), time.Minute)
		b.waitRemote("blue", "10.90.0.2", true)
		if err := vxPing(t, cb, "10.90.0.2", 56); err != nil {
			t.Fatalf("b -> a after the record was published again: %v", err)
		}

		// A restart keeps the device and its entries; one deleted while the
		// plugin was down comes back with the start-up restore.
		a.restart(srv)
		if r, _, _ := link.Remotes(vxlanName(vxNetA)); len(r) != 1 {
			t.Fatalf("entries after a restart: %+v", r)
		}
		if err := link.Delete(vxlanName(vxNetA)); err != nil {
			t.Fatal(err)
		}
		a.restart(srv)
		a.waitRemote("blue", "10.90.0.3", true)
		if err := vxPing(t, ca, "10.90.0.3", 56); err != nil {
			t.Fatalf("a -> b after the device was re-created: %v", err)
		}

		// b's endpoint goes: a drops its entries, and traffic stops.
		b.enter()
		if err := b.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: vxNetB, EndpointID: vxEpB}); err != nil {
			t.Fatal(err)
		}
		a.waitRemote("blue", "10.90.0.3", false)
		a.enter()
		if r, dst, _ := link.Remotes(vxlanName(vxNetA)); len(r) != 0 || len(dst) != 0 {
			t.Fatalf("entries after b's endpoint left: %+v %+v", r, dst)
		}

		deleteVXNetworks(t, a, b)
		if eps, _ := a.cl.Endpoints(context.Background(), "blue"); len(eps) != 0 {
			t.Fatalf("endpoint records left: %+v", eps)
		}
	})
}

func TestVXLANRefusals(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	inLockedThread(t, func() {
		nsA, nsB := underlay(t)
		a, b := newVXHost(t, srv, "hosta", nsA, "192.0.2.1"), newVXHost(t, srv, "hostb", nsB, "192.0.2.2")

		// Not a cluster pool.
		a.enter()
		err := a.d.CreateNetwork(netReq(vxNetA, "10.91.0.0/24", "10.91.0.1/24", map[string]any{optBackend: backendVXLAN}))
		if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "--ipam-opt network=NAME") {
			t.Fatalf("vxlan on a local pool: %v", err)
		}

		// The first host defines backend vxlan; another backend is refused.
		for _, h := range []*vxHost{a, b} {
			h.pool("blue", "10.90.0.0/24")
		}
		a.enter()
		if err := a.d.CreateNetwork(netReq(vxNetA, "10.90.0.0/24", "10.90.0.1/24", map[string]any{optBackend: backendVXLAN})); err != nil {
			t.Fatal(err)
		}
		b.enter()
		err = b.d.CreateNetwork(netReq(vxNetB, "10.90.0.0/24", "10.90.0.1/24", map[string]any{optBackend: backendBridge}))
		if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "cluster network blue already exists with backend=vxlan; this request asks for backend=bridge") {
			t.Fatalf("other backend: %v", err)
		}
		err = b.d.CreateNetwork(netReq(vxNetB, "10.90.0.0/24", "10.90.0.1/24", map[string]any{optBackend: backendVXLAN, optICC: "false"}))
		if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "option com.docker.network.bridge.enable_icc=true; this request asks for option com.docker.network.bridge.enable_icc=false") {
			t.Fatalf("other option: %v", err)
		}
		if names, _ := link.Names(); strings.Contains(strings.Join(names, " "), "mn") {
			t.Fatalf("refusals left links on b: %v", names)
		}

		// A stale device of ours holding the VNI is removed; a foreign one is named.
		b.enter()
		stale := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "mnv0000000000aa"}, VxlanId: cluster.FirstVNI, Port: DefaultVXLANPort}
		if err := netlink.LinkAdd(stale); err != nil {
			t.Fatal(err)
		}
		link.SetAlias("mnv0000000000aa", b.d.owner)
		if err := b.d.CreateNetwork(netReq(vxNetB, "10.90.0.0/24", "10.90.0.1/24", map[string]any{optBackend: backendVXLAN})); err != nil {
			t.Fatalf("create over a stale device of ours: %v", err)
		}
		if ok, _ := link.Exists("mnv0000000000aa"); ok {
			t.Fatal("the stale device is still there")
		}
		if err := b.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: vxNetB}); err != nil {
			t.Fatal(err)
		}
		foreign := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "othertunnel"}, VxlanId: cluster.FirstVNI, Port: DefaultVXLANPort}
		if err := netlink.LinkAdd(foreign); err != nil {
			t.Fatal(err)
		}
		defer link.Delete("othertunnel")
		err = b.d.CreateNetwork(netReq(vxNetB, "10.90.0.0/24", "10.90.0.1/24", map[string]any{optBackend: backendVXLAN}))
		if err == nil || !strings.Contains(err.Error(), "VXLAN device othertunnel already uses VNI 4096") {
			t.Fatalf("create over a foreign device: %v", err)
		}
		if names, _ := link.Names(); strings.Contains(strings.Join(names, " "), "mn") {
			t.Fatalf("the failed create left links: %v", names)
		}
	})

	// Without --cluster, vxlan is refused naming what to add.
	inNetns(t, func(e *env) {
		err := e.d.CreateNetwork(netReq(vxNetA, "10.91.0.0/24", "10.91.0.1/24", map[string]any{optBackend: backendVXLAN}))
		if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "start mynet with --cluster") {
			t.Fatalf("vxlan without --cluster: %v", err)
		}
		e.assertNoLeftovers()
	})
}

// A dual-stack cluster network: each endpoint is published under both its
// addresses, and the other host's VXLAN device answers neighbour discovery
// for the IPv6 one from a static entry, as it answers ARP for the IPv4 one.
func TestVXLANDualStack(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	inLockedThread(t, func() {
		nsA, nsB := underlay(t)
		a, b := newVXHost(t, srv, "hosta", nsA, "192.0.2.1"), newVXHost(t, srv, "hostb", nsB, "192.0.2.2")
		for _, x := range []struct {
			h  *vxHost
			id string
		}{{a, vxNetA}, {b, vxNetB}} {
			x.h.pool("blue", "10.91.0.0/24")
			x.h.pool("blue", "fd00:91::/64")
			x.h.enter()
			req := netReq(x.id, "10.91.0.0/24", "10.91.0.1/24", map[string]any{optBackend: backendVXLAN})
			req.Options[optEnableIPv6] = true
			req.IPv6Data = []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: "fd00:91::/64", Gateway: "fd00:91::1/64"}}
			if err := x.h.d.CreateNetwork(req); err != nil {
				t.Fatalf("%s: CreateNetwork: %v", x.h.name, err)
			}
		}
		for _, c := range []struct {
			h      *vxHost
			v4, v6 string
		}{{a, "10.91.0.2", "fd00:91::2"}, {b, "10.91.0.3", "fd00:91::3"}} {
			c.h.claim("blue", c.v4)
			c.h.claim("blue", c.v6)
		}
		ca := a.container(vxNetA, vxEpA, "10.91.0.2/24", "fd00:91::2/64")
		b.container(vxNetB, vxEpB, "10.91.0.3/24", "fd00:91::3/64")
		a.waitRemote("blue", "fd00:91::3", true)
		b.waitRemote("blue", "fd00:91::2", true)

		a.enter()
		remotes, _, err := link.Remotes(vxlanName(vxNetA))
		want := link.Remote{IP: netip.MustParseAddr("fd00:91::3"), MAC: "02:42:0a:5b:00:03", VTEP: netip.MustParseAddr("192.0.2.2")}
		if err != nil || len(remotes) != 2 || remotes[want.IP] != want {
			t.Fatalf("host a's entries: %+v, %v; want %+v among 2", remotes, err, want)
		}
		if err := vxPing(t, ca, "fd00:91::3", 56); err != nil {
			t.Fatalf("a -> b over IPv6: %v", err)
		}
		if err := vxPing(t, ca, "fd00:91::3", 3000); err != nil { // larger than the MTU
			t.Fatalf("a -> b over IPv6, 3000 bytes: %v", err)
		}
		if err := vxPing(t, ca, "fd00:91::1", 56); err != nil { // the gateway on a's own bridge
			t.Fatalf("a -> IPv6 gateway: %v", err)
		}
		if drifts := a.d.Doctor(drift.View{}, false, nil, 0); len(drifts) != 0 {
			t.Fatalf("doctor on a consistent dual-stack host: %+v", drifts)
		}

		// b's endpoint goes: both its records, and a's entries for them.
		b.enter()
		if err := b.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: vxNetB, EndpointID: vxEpB}); err != nil {
			t.Fatal(err)
		}
		a.waitRemote("blue", "fd00:91::3", false)
		a.waitRemote("blue", "10.91.0.3", false)
		a.enter()
		if r, dst, _ := link.Remotes(vxlanName(vxNetA)); len(r) != 0 || len(dst) != 0 {
			t.Fatalf("entries after b's endpoint left: %+v %+v", r, dst)
		}
		deleteVXNetworks(t, a, b)
	})
}
