package driver

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/state"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// These tests drive the real kernel (links, iptables) and a real bbolt file,
// each inside a fresh network namespace so the host is never touched.

type env struct {
	t     *testing.T
	path  string
	store *state.Store
	d     *Driver

	repairsMu sync.Mutex
	repairs   map[string]int // what OnRepair heard, by kind, since the last start
}

func (e *env) repaired() map[string]int {
	e.repairsMu.Lock()
	defer e.repairsMu.Unlock()
	return maps.Clone(e.repairs)
}

// inNetns runs fn on a thread in a new network namespace. Everything that
// touches the kernel must run inside fn.
func inNetns(t *testing.T, fn func(e *env)) {
	t.Helper()
	testutil.InNetns(t, func() {
		e := &env{t: t, path: filepath.Join(t.TempDir(), "mynet.db")}
		e.start()
		defer func() { e.d.Close(); e.store.Close() }()
		fn(e)
	})
}

func (e *env) start() {
	e.t.Helper()
	s, err := state.Open(e.path, state.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	fw, err := firewall.NewWithConfig(nil, firewall.Config{Owner: s.InstanceID()}) // as main wires it
	if err != nil {
		e.t.Fatal(err)
	}
	e.repairsMu.Lock()
	e.repairs = map[string]int{}
	e.repairsMu.Unlock()
	d, err := New(Config{Store: s, Firewall: fw, OnRepair: func(kind string) {
		e.repairsMu.Lock()
		defer e.repairsMu.Unlock()
		e.repairs[kind]++
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store, e.d = s, d
}

func (e *env) restart() {
	e.t.Helper()
	e.d.Close()
	e.store.Close()
	e.start()
}

func netReq(id, subnet, gw string, generic map[string]any) *api.CreateNetworkRequest {
	opts := map[string]any{optGeneric: generic, optEnableIPv6: false}
	return &api.CreateNetworkRequest{NetworkID: id, Options: opts,
		IPv4Data: []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: subnet, Gateway: gw}}}
}

func (e *env) createNetwork(id, subnet, gw string, generic map[string]any) {
	e.t.Helper()
	if err := e.d.CreateNetwork(netReq(id, subnet, gw, generic)); err != nil {
		e.t.Fatalf("CreateNetwork: %v", err)
	}
}

func (e *env) createEndpoint(netID, epID, addr string) *api.CreateEndpointResponse {
	e.t.Helper()
	r, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netID, EndpointID: epID,
		Interface: &api.EndpointInterface{Address: addr}, Options: map[string]any{}})
	if err != nil {
		e.t.Fatalf("CreateEndpoint: %v", err)
	}
	return r
}

// fakeSysctls points the driver's sysctl writes at a fresh directory, as a
// managed plugin's bound /proc/sys/net, that holds only
// net/ipv4/ip_forward with the value ipForward; it returns the directory.
func (e *env) fakeSysctls(ipForward string) string {
	e.t.Helper()
	root := e.t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "net/ipv4"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "net/ipv4/ip_forward"), []byte(ipForward+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.d.sysctls = link.Sysctls{Root: root}
	return root
}

// assertNoLeftovers fails the test if anything of ours remains (leftovers).
func (e *env) assertNoLeftovers() {
	e.t.Helper()
	if left := e.leftovers(); len(left) > 0 {
		e.t.Fatalf("left behind: %v", left)
	}
}

// leftovers lists links, rules and records of ours that remain.
func (e *env) leftovers() []string {
	var out []string
	names, _ := link.Names()
	for _, n := range names {
		if strings.HasPrefix(n, "mn") {
			out = append(out, "link "+n)
		}
	}
	owned, err := e.d.fw.Owned()
	if err != nil {
		out = append(out, "firewall: "+err.Error())
	}
	for _, b := range owned {
		out = append(out, "rules for "+b)
	}
	e.store.View(func(tx *state.Tx) error {
		ns, _ := tx.Networks()
		for _, n := range ns {
			out = append(out, "network record "+n.ID)
		}
		eps, _ := tx.Endpoints()
		for _, ep := range eps {
			out = append(out, "endpoint record "+ep.ID)
		}
		return nil
	})
	if held := e.d.ports.Held(); len(held) > 0 {
		out = append(out, fmt.Sprintf("held ports %v", held))
	}
	return out
}

const netA = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111"
const netB = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222"
const ep1 = "111111111111eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

func TestNetworkAndEndpointLifecycle(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.60.0.0/24", "10.60.0.1/24", map[string]any{optMTU: "1400"})
		br, err := netlink.LinkByName("mn-aaaaaaaaaaaa")
		if err != nil {
			t.Fatalf("bridge: %v", err)
		}
		if br.Attrs().MTU != 1400 {
			t.Errorf("bridge MTU %d", br.Attrs().MTU)
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.60.0.1/24" {
			t.Errorf("bridge addresses %v", addrs)
		}

		resp := e.createEndpoint(netA, ep1, "10.60.0.2/24")
		if resp.Interface == nil || resp.Interface.MacAddress != "02:42:0a:3c:00:02" || resp.Interface.Address != "" {
			t.Errorf("CreateEndpoint response %+v", resp.Interface)
		}
		peer, err := netlink.LinkByName(containerIfName(ep1))
		if err != nil || peer.Attrs().MTU != 1400 {
			t.Fatalf("container end: %v %+v", err, peer)
		}
		join, err := e.d.Join(&api.JoinRequest{NetworkID: netA, EndpointID: ep1, SandboxKey: "/var/run/docker/netns/x"})
		if err != nil {
			t.Fatal(err)
		}
		if join.Gateway != "10.60.0.1" || join.InterfaceName.SrcName != containerIfName(ep1) || join.InterfaceName.DstPrefix != "eth" || join.DisableGatewayService {
			t.Errorf("Join response %+v", join)
		}

		pm := []any{map[string]any{"Proto": float64(6), "Port": float64(80), "HostIP": "127.0.0.1", "HostPort": float64(28080), "HostPortEnd": float64(28080)}}
		if err := e.d.ProgramExternalConnectivity(&api.ProgramExternalConnectivityRequest{NetworkID: netA, EndpointID: ep1,
			Options: map[string]any{optPortMap: pm}}); err != nil {
			t.Fatal(err)
		}
		if held := e.d.ports.Held(); len(held) != 1 || held[0].HostPort != 28080 {
			t.Errorf("held %v", held)
		}
		for i := 0; i < 2; i++ {
			if err := e.d.RevokeExternalConnectivity(&api.RevokeExternalConnectivityRequest{NetworkID: netA, EndpointID: ep1}); err != nil {
				t.Fatal(err)
			}
		}
		if held := e.d.ports.Held(); len(held) != 0 {
			t.Errorf("held after revoke %v", held)
		}
		e.deleteAll(netA, ep1) // each call twice: deletes are idempotent
		e.assertNoLeftovers()
	})
}

func TestUserMACIsUsedAndNeverEchoed(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.61.0.0/24", "10.61.0.1/24", nil)
		r, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netA, EndpointID: ep1,
			Interface: &api.EndpointInterface{Address: "10.61.0.9/24", MacAddress: "02:aa:bb:cc:dd:ee"}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Interface != nil {
			t.Fatalf("echoed interface %+v", r.Interface)
		}
		peer, _ := netlink.LinkByName(containerIfName(ep1))
		if peer.Attrs().HardwareAddr.String() != "02:aa:bb:cc:dd:ee" {
			t.Fatalf("MAC %s", peer.Attrs().HardwareAddr)
		}
	})
}

func TestBadOptionsAreNamedAndLeaveNothing(t *testing.T) {
	inNetns(t, func(e *env) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "mnveth0"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "mnveth1"}); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			opts map[string]any
			want string
		}{
			{map[string]any{"colour": "blue"}, `unknown option "colour"`},
			{map[string]any{optMTU: "9x"}, optMTU},
			{map[string]any{optMTUShort: "20"}, "68 to 65535"},
			{map[string]any{optICC: "maybe"}, optICC},
			{map[string]any{optBridgeName: "much-too-long-bridge"}, "at most 15"},
			{map[string]any{optBridgeName: "-j ACCEPT"}, optBridgeName},
			{map[string]any{optBridgeName: "mnveth0"}, "not a bridge"},
			{map[string]any{optBackend: "overlay"}, "unknown backend"},
			{map[string]any{optHostBinding: "::1"}, optHostBinding},
			{map[string]any{optIfPrefix: "eth-0"}, optIfPrefix},
		}
		for _, c := range cases {
			err := e.d.CreateNetwork(netReq(netA, "10.62.0.0/24", "10.62.0.1/24", c.opts))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("options %v: error %v, want it to mention %q", c.opts, err, c.want)
			}
		}
		netlink.LinkDel(&netlink.Veth{LinkAttrs: attrs})
		e.assertNoLeftovers()
	})
}

func TestConflictsAreRefused(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.63.0.0/24", "10.63.0.1/24", map[string]any{optBridgeName: "mnshared"})
		err := e.d.CreateNetwork(netReq(netB, "10.64.0.0/24", "10.64.0.1/24", map[string]any{optBridgeName: "mnshared"}))
		if err == nil || !strings.Contains(err.Error(), "already used") {
			t.Errorf("shared bridge: %v", err)
		}
		err = e.d.CreateNetwork(netReq(netB, "10.63.0.0/16", "10.63.0.1/16", nil))
		if err == nil || !strings.Contains(err.Error(), "overlaps") {
			t.Errorf("overlapping subnet: %v", err)
		}
		if ok, _ := link.Exists("mn-bbbbbbbbbbbb"); ok {
			t.Error("refused network left its bridge")
		}
		if _, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netB, EndpointID: ep1}); err == nil {
			t.Error("endpoint on unknown network accepted")
		}
		if _, err := e.d.Join(&api.JoinRequest{NetworkID: netA, EndpointID: ep1}); err == nil {
			t.Error("Join before CreateEndpoint accepted")
		}
	})
}

// A host reboot (or a hand cleanup) removes our bridge and rules; the next
// start must rebuild them and put surviving endpoints back on the bridge.
func TestRestartRebuildsDeletedBridgeAndRules(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.65.0.0/24", "10.65.0.1/24", nil)
		e.createEndpoint(netA, ep1, "10.65.0.2/24")
		if err := link.Delete("mn-aaaaaaaaaaaa"); err != nil {
			t.Fatal(err)
		}
		if err := e.d.fw.Cleanup(); err != nil {
			t.Fatal(err)
		}
		e.restart()
		br, err := netlink.LinkByName("mn-aaaaaaaaaaaa")
		if err != nil {
			t.Fatalf("bridge not rebuilt: %v", err)
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.65.0.1/24" {
			t.Errorf("gateway not restored: %v", addrs)
		}
		if m, _ := link.Master(hostIfName(ep1)); m != "mn-aaaaaaaaaaaa" {
			t.Errorf("endpoint not re-attached: master %q", m)
		}
		want := map[string]int{RepairLinks: 1, RepairEndpointAttach: 1, RepairFirewallRules: 1}
		if got := e.repaired(); !maps.Equal(got, want) {
			t.Errorf("OnRepair heard %v, want %v", got, want)
		}
		owned, _ := e.d.fw.Owned()
		if len(owned) != 1 || owned[0] != "mn-aaaaaaaaaaaa" {
			t.Errorf("rules not restored: %v", owned)
		}
		e.deleteNetworks(netA)
		e.assertNoLeftovers()
	})
}

// An existing bridge is used and never deleted by us.
func TestExistingBridgeIsKept(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			inNetns(t, func(e *env) {
				e.d.SetAsyncTeardown(async)
				if _, _, err := link.SetUpBridge("mnmine", 0, nil); err != nil {
					t.Fatal(err)
				}
				e.createNetwork(netA, "10.66.0.0/24", "10.66.0.1/24", map[string]any{optBridgeName: "mnmine"})
				e.deleteNetworks(netA)
				e.d.Close() // whatever went to the background is done
				br, err := netlink.LinkByName("mnmine")
				if err != nil {
					t.Fatal("a bridge we did not create was deleted")
				}
				if br.Attrs().Flags&net.FlagUp == 0 {
					t.Fatal("a bridge we did not create was taken down")
				}
				if addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4); len(addrs) != 0 {
					t.Fatalf("our gateway address stayed on it: %v", addrs)
				}
			})
		})
	}
}

// Docker sends requests in parallel: 40 endpoints on two networks at once.
func TestParallelEndpoints(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.67.0.0/24", "10.67.0.1/24", nil)
		e.createNetwork(netB, "10.68.0.0/24", "10.68.0.1/24", nil)
		testNS, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer testNS.Close()
		parallel := func(n int, fn func(i int) error) {
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runtime.LockOSThread() // the thread joins the test namespace and dies with the goroutine
					if err := netns.Set(testNS); err != nil {
						errs[i] = err
						return
					}
					errs[i] = fn(i)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		netOf := func(i int) (string, string) {
			if i%2 == 1 {
				return netB, "10.68.0."
			}
			return netA, "10.67.0."
		}
		id := func(i int) string { return fmt.Sprintf("%012d%052d", i, 0) }
		parallel(40, func(i int) error {
			net, prefix := netOf(i)
			_, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: net, EndpointID: id(i),
				Interface: &api.EndpointInterface{Address: fmt.Sprintf("%s%d/24", prefix, 10+i)}})
			if err != nil {
				return err
			}
			_, err = e.d.Join(&api.JoinRequest{NetworkID: net, EndpointID: id(i)})
			return err
		})
		for i := 0; i < 40; i++ {
			net, _ := netOf(i)
			br := "mn-" + net[:12]
			if m, _ := link.Master(hostIfName(id(i))); m != br {
				t.Fatalf("endpoint %d on %q, want %s", i, m, br)
			}
		}
		parallel(40, func(i int) error {
			net, _ := netOf(i)
			return e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: net, EndpointID: id(i)})
		})
		e.deleteNetworks(netA, netB)
		e.assertNoLeftovers()
	})
}

// After someone flushes our chains (iptables -F, firewalld reload) the
// periodic check puts every network's rules back.
func TestRepairFirewallReaddsFlushedRules(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.69.0.0/24", "10.69.0.1/24", nil)
		if err := e.d.fw.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if owned, _ := e.d.fw.Owned(); len(owned) != 0 {
			t.Fatalf("cleanup left %v", owned)
		}
		e.d.repairFirewall()
		owned, _ := e.d.fw.Owned()
		if len(owned) != 1 || owned[0] != "mn-aaaaaaaaaaaa" {
			t.Fatalf("after repair: %v", owned)
		}
		e.d.repairFirewall() // nothing missing now: no second repair
		if got := e.repaired(); !maps.Equal(got, map[string]int{RepairFirewallRules: 1}) {
			t.Fatalf("OnRepair heard %v", got)
		}
	})
}

// Objects with our names or rule comments that no record claims (a crash
// between a kernel change and its record) are removed at start.
func TestStartRemovesOrphans(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.88.0.0/24", "10.88.0.1/24", nil)
		for name, owner := range map[string]string{"mn-0123456789ab": e.d.owner, "mn-0123456789ac": "mynet:0123456789ab"} {
			if _, _, err := link.SetUpBridge(name, 0, nil); err != nil {
				t.Fatal(err)
			}
			if err := link.SetAlias(name, owner); err != nil {
				t.Fatal(err)
			}
		}
		orphan := firewall.Network{ID: "0123456789ab", Bridge: "mn-0123456789ab", ICC: true, Masquerade: true,
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.89.0.0/24")}}
		if err := e.d.fw.AddNetwork(orphan); err != nil {
			t.Fatal(err)
		}
		if _, _, err := link.SetUpBridge("mnmine0", 0, nil); err != nil { // not our naming: kept
			t.Fatal(err)
		}
		// A crash between creating a bridge and marking it: no alias, but
		// the MAC we give ours. One with another MAC is someone else's.
		if _, _, err := link.SetUpBridge("mn-0123456789ad", 0, e.d.linkMAC("mn-0123456789ad")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := link.SetUpBridge("mn-0123456789ae", 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := link.CreateVeth(link.Veth{Host: "mnh0123456789af", Peer: "mnc0123456789af", Bridge: "mnmine0", HostMAC: e.d.linkMAC("mnh0123456789af")}); err != nil {
			t.Fatal(err)
		}
		e.restart()
		if ok, _ := link.Exists("mnh0123456789af"); ok {
			t.Error("an unmarked veth with our MAC (made just before a crash) was kept")
		}
		if ok, _ := link.Exists("mn-0123456789ad"); ok {
			t.Error("an unmarked bridge with our MAC (made just before a crash) was kept")
		}
		if ok, _ := link.Exists("mn-0123456789ae"); !ok {
			t.Error("an unmarked bridge with another MAC was removed")
		}
		if ok, _ := link.Exists("mn-0123456789ab"); ok {
			t.Error("orphan bridge kept")
		}
		if ok, _ := link.Exists("mn-0123456789ac"); !ok {
			t.Error("a bridge marked by another mynet instance was removed")
		}
		if ok, _ := link.Exists("mnmine0"); !ok {
			t.Error("a bridge that is not named like ours was removed")
		}
		owned, _ := e.d.fw.Owned()
		if len(owned) != 1 || owned[0] != "mn-aaaaaaaaaaaa" {
			t.Errorf("rules after start: %v", owned)
		}
		want := map[string]int{RepairOrphanLink: 3, RepairOrphanRules: 1}
		if got := e.repaired(); !maps.Equal(got, want) {
			t.Errorf("OnRepair heard %v, want %v", got, want)
		}
	})
}

// openBench opens the state file at path and a driver on it, as a start
// does; fail ends the benchmark's goroutine.
func openBench(path string, log *slog.Logger, fail func(error)) (*state.Store, *Driver) {
	s, err := state.Open(path, state.Options{})
	if err != nil {
		fail(err)
	}
	fw, err := firewall.NewWithConfig(nil, firewall.Config{Owner: s.InstanceID()})
	if err != nil {
		fail(err)
	}
	d, err := New(Config{Store: s, Firewall: fw, Log: log})
	if err != nil {
		fail(err)
	}
	return s, d
}

// BenchmarkStartWith200Networks2000Endpoints measures a restart (store open
// to driver ready) with 200 bridge networks and 2,000 endpoints with real
// bridges, veths and rules.
func BenchmarkStartWith200Networks2000Endpoints(b *testing.B) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		fail := func(err error) { b.Error(err); runtime.Goexit() } // Fatal is for the benchmark's goroutine
		if _, err := netns.New(); err != nil {
			fail(err)
		}
		path := filepath.Join(b.TempDir(), "mynet.db")
		open := func() (*state.Store, *Driver) { return openBench(path, nil, fail) }
		s, d := open()
		for i := 0; i < 200; i++ {
			id := fmt.Sprintf("%012x%052d", i+1, 0)
			if err := d.CreateNetwork(netReq(id, fmt.Sprintf("10.%d.%d.0/24", 100+i/200, i%200), fmt.Sprintf("10.%d.%d.1/24", 100+i/200, i%200), nil)); err != nil {
				fail(err)
			}
			for j := 0; j < 10; j++ {
				ep := fmt.Sprintf("%06x%06x%052d", i+1, j+1, 0)
				if _, err := d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: id, EndpointID: ep,
					Interface: &api.EndpointInterface{Address: fmt.Sprintf("10.%d.%d.%d/24", 100+i/200, i%200, j+2)}}); err != nil {
					fail(err)
				}
			}
		}
		s.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s, _ = open()
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	}()
	<-done
}

// BenchmarkStartAfterReboot1000Networks measures a start (store open to
// driver ready) in a fresh network namespace, as after a reboot: every
// bridge, address and rule of 1,000 bridge networks made again.
func BenchmarkStartAfterReboot1000Networks(b *testing.B) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread dies with its namespaces
		fail := func(err error) { b.Error(err); runtime.Goexit() }
		if _, err := netns.New(); err != nil {
			fail(err)
		}
		path := filepath.Join(b.TempDir(), "mynet.db")
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		open := func() (*state.Store, *Driver) { return openBench(path, quiet, fail) }
		s, d := open()
		for i := 0; i < 1000; i++ {
			id := fmt.Sprintf("%x%011x%052d", i%16, i+1, 0) // every shard
			sub := fmt.Sprintf("10.%d.%d", 100+i/200, i%200)
			if err := d.CreateNetwork(netReq(id, sub+".0/24", sub+".1/24", nil)); err != nil {
				fail(err)
			}
		}
		s.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := netns.New(); err != nil { // the "reboot"
				fail(err)
			}
			b.StartTimer()
			s, _ = open()
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	}()
	<-done
}

// A managed plugin writes sysctls through the host's /proc/sys/net bound
// elsewhere: the driver must write under the root it is given.
func TestSysctlsGoUnderTheGivenRoot(t *testing.T) {
	inNetns(t, func(e *env) {
		root := e.fakeSysctls("0")
		e.createNetwork(netA, "10.91.0.0/24", "10.91.0.1/24", nil)
		got, err := os.ReadFile(filepath.Join(root, "net/ipv4/ip_forward"))
		if err != nil || string(got) != "1" {
			t.Fatalf("ip_forward under the root: %q %v", got, err)
		}
	})
}

// After a reboot every network's rules come back in one batch: the same rules
// AddNetwork makes one network at a time.
func TestRestartReaddsRulesOfAllNetworksInOneBatch(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.66.0.0/24", "10.66.0.1/24", nil)
		e.createNetwork(netB, "10.67.0.0/24", "10.67.0.1/24", map[string]any{optMasquerade: "false"})
		before := ourRuleLines(t)
		for _, br := range []string{"mn-aaaaaaaaaaaa", "mn-bbbbbbbbbbbb"} {
			if err := link.Delete(br); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.d.fw.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if left := ourRuleLines(t); len(left) != 0 {
			t.Fatalf("cleanup left %v", left)
		}
		e.restart()
		if after := ourRuleLines(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Fatalf("rules after restart:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
		}
		e.deleteNetworks(netA, netB)
		e.assertNoLeftovers()
	})
}

// ourRuleLines: the sorted iptables-save lines that mention mynet's chains or
// comments (run on the namespace's thread).
func ourRuleLines(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, "MYNET-") || strings.Contains(l, "mynet:") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}
