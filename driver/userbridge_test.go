package driver

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
	"github.com/vishvananda/netlink"
)

// Bridges mynet did not create carry no mark of any instance: what mynet
// leaves on them, and takes away, is told by its rules and records alone.

// userBridge creates a bridge the way a user would (no mark).
func userBridge(t *testing.T, name string) {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("bridge %s: %v", name, err)
	}
	if alias := link.Alias(name); alias != "" {
		t.Fatalf("bridge %s has alias %q", name, alias)
	}
}

// rulesNaming counts the iptables-save lines (IPv4, every table) whose
// comment names network id12.
func rulesNaming(t *testing.T, id12 string) int {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	return strings.Count(string(out), "mynet:"+id12)
}

// Two mynet instances (two state files) in one network namespace, each with
// a network on a bridge of the user's: each start removes the rules that no
// record of its own claims and that it made, and never the other's.
func TestTwoInstancesRemoveOnlyTheirOwnRules(t *testing.T) {
	inNetns(t, func(a *env) {
		b := &env{t: t, path: filepath.Join(t.TempDir(), "other.db")}
		b.start()
		defer func() { b.store.Close() }()
		for _, br := range []string{"usr0", "usr1", "usr2"} {
			userBridge(t, br)
		}
		a.createNetwork(netA, "10.71.0.0/24", "10.71.0.1/24", map[string]any{optBridgeName: "usr0"})
		b.createNetwork(netB, "10.72.0.0/24", "10.72.0.1/24", map[string]any{optBridgeName: "usr1"})
		// A crash of A between its rules and its record: rules of A that no
		// record claims, on another bridge of the user's.
		stray := firewall.Network{ID: "0123456789ab", Bridge: "usr2", ICC: true, Masquerade: true,
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.73.0.0/24")}}
		if err := a.d.fw.AddNetwork(stray); err != nil {
			t.Fatal(err)
		}
		wantA, wantB := rulesNaming(t, "aaaaaaaaaaaa"), rulesNaming(t, "bbbbbbbbbbbb")
		if wantA == 0 || wantB == 0 {
			t.Fatalf("no rules: A %d, B %d", wantA, wantB)
		}

		for _, o := range b.d.findOrphans(survey{}) {
			t.Errorf("instance B counts as its orphan: %s (%s)", o.drift.Object, o.drift.Detail)
		}
		b.restart()
		if got := rulesNaming(t, "aaaaaaaaaaaa"); got != wantA {
			t.Errorf("instance B's start left %d of instance A's %d rules", got, wantA)
		}
		if got := rulesNaming(t, "0123456789ab"); got == 0 {
			t.Errorf("instance B's start removed instance A's stray rules")
		}
		a.restart()
		if got := rulesNaming(t, "0123456789ab"); got != 0 {
			t.Errorf("instance A's start left %d of its own stray rules", got)
		}
		if got := rulesNaming(t, "bbbbbbbbbbbb"); got != wantB {
			t.Errorf("instance A's start left %d of instance B's %d rules", got, wantB)
		}
		if got := rulesNaming(t, "aaaaaaaaaaaa"); got != wantA {
			t.Errorf("instance A's own network has %d rules after its start, want %d", got, wantA)
		}
		if got := a.repaired(); got[RepairOrphanRules] != 1 || got[RepairFirewallRules] != 0 {
			t.Errorf("instance A's start repaired %v, want one orphan and no rules re-added", got)
		}

		for _, e := range []*env{a, b} {
			e.deleteNetworks(netA, netB)
		}
		for _, id12 := range []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"} {
			if got := rulesNaming(t, id12); got != 0 {
				t.Errorf("network %s: %d rules left after its delete", id12, got)
			}
		}
	})
}

// route_localnet, which mynet sets on a bridge for -p 127.0.0.1:..., goes
// back to what it was when the network on a user's bridge goes, also when
// the delete comes after a restart. On a bridge mynet created there is
// nothing to put back.
func TestUserBridgeGetsRouteLocalnetBack(t *testing.T) {
	inNetns(t, func(e *env) {
		userBridge(t, "usr0")
		const key = "net/ipv4/conf/usr0/route_localnet"
		want := func(v, when string) {
			t.Helper()
			got, err := e.d.sysctls.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			if got != v {
				t.Fatalf("route_localnet=%s %s, want %s", got, when, v)
			}
		}
		want("0", "on a new bridge")
		e.createNetwork(netA, "10.74.0.0/24", "10.74.0.1/24", map[string]any{optBridgeName: "usr0"})
		want("1", "on the network's bridge")
		e.restart()
		e.deleteNetworks(netA)
		want("0", "after the network went (as before it)")

		// A network of an older mynet (no record of the value before) on a
		// bridge the network configuration made again since: the start
		// notes what it finds, and the delete puts it back.
		e.createNetwork(netB, "10.75.0.0/24", "10.75.0.1/24", map[string]any{optBridgeName: "usr0"})
		if err := e.store.Update(func(tx *state.Tx) error {
			n, _, err := tx.Network(netB)
			n.SysctlsBefore = nil
			if err == nil {
				err = tx.PutNetwork(n)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("/proc/sys/"+key, []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.restart()
		want("1", "after the start")
		e.restart()
		e.deleteNetworks(netB)
		want("0", "after the older network went (as the start found it)")
		if left := e.leftovers(); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// bridgeAddrs lists the IPv4 addresses of a link.
func bridgeAddrs(t *testing.T, name string) []string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

// A user's bridge keeps the addresses it had: a failed create and the
// delete of a network (also after a restart) remove only the gateway mynet
// added.
func TestUserBridgeKeepsItsOwnAddresses(t *testing.T) {
	inNetns(t, func(e *env) {
		userBridge(t, "usr0")
		l, _ := netlink.LinkByName("usr0")
		own, _ := netlink.ParseAddr("10.96.0.1/24")
		if err := netlink.AddrAdd(l, own); err != nil {
			t.Fatal(err)
		}
		want := func(when string, addrs ...string) {
			t.Helper()
			if got := bridgeAddrs(t, "usr0"); !slices.Equal(got, addrs) {
				t.Errorf("%s: usr0 has %v, want %v", when, got, addrs)
			}
		}

		// A create that fails after the gateway is on the bridge: its
		// IPv6 half cannot read the bridge's settings.
		e.fakeSysctls("1")
		req := netReq(netA, "10.96.0.0/24", "10.96.0.1/24", map[string]any{optBridgeName: "usr0"})
		req.Options[optEnableIPv6] = true
		req.IPv6Data = []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: "fd00:96::/64", Gateway: "fd00:96::1/64"}}
		if err := e.d.CreateNetwork(req); err == nil {
			t.Fatal("create succeeded without the bridge's IPv6 settings")
		}
		e.d.sysctls = link.Sysctls{}
		want("after a failed create", "10.96.0.1/24")

		userBridge(t, "usr1")
		e.createNetwork(netA, "10.96.0.0/24", "10.96.0.1/24", map[string]any{optBridgeName: "usr0"})
		e.createNetwork(netB, "10.97.0.0/24", "10.97.0.1/24", map[string]any{optBridgeName: "usr1"})
		want("with its network", "10.96.0.1/24")
		e.restart()
		e.deleteNetworks(netA, netB)
		if got := bridgeAddrs(t, "usr1"); len(got) != 0 {
			t.Errorf("usr1 keeps the gateway mynet added: %v", got)
		}
		want("after its network went", "10.96.0.1/24")
		if left := e.leftovers(); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// A user's bridge missing at a start (mynet started before the network
// configuration) is the user's to create: mynet does not make it in its
// place, sets the network up again at a periodic check once it is back, and
// never deletes it.
func TestUserBridgeMissingAtStartIsAwaitedNotTaken(t *testing.T) {
	inNetns(t, func(e *env) {
		userBridge(t, "usr0")
		e.createNetwork(netA, "10.98.0.0/24", "10.98.0.1/24", map[string]any{optBridgeName: "usr0"})
		e.createEndpoint(netA, ep1, "10.98.0.2/24")
		if err := link.Delete("usr0"); err != nil {
			t.Fatal(err)
		}
		e.restart()
		if ok, _ := link.Exists("usr0"); ok {
			t.Fatalf("the start created the user's bridge (alias %q)", link.Alias("usr0"))
		}
		e.d.repairFirewall()
		if ok, _ := link.Exists("usr0"); ok {
			t.Fatal("the periodic check created the user's bridge")
		}
		ds := e.d.Doctor(drift.View{}, false, drift.FixAll, 0)
		if len(ds) != 1 || ds[0].Kind != drift.LinksMissing || ds[0].Fixed || ds[0].Error == "" {
			t.Errorf("doctor --fix: %+v, want the missing bridge reported and left to the user", ds)
		}
		if ok, _ := link.Exists("usr0"); ok {
			t.Fatal("doctor --fix created the user's bridge")
		}

		userBridge(t, "usr0") // the network configuration comes up
		e.d.repairFirewall()
		if got := bridgeAddrs(t, "usr0"); !slices.Equal(got, []string{"10.98.0.1/24"}) {
			t.Errorf("gateway on the bridge once back: %v", got)
		}
		if m, _ := link.Master(hostIfName(ep1)); m != "usr0" {
			t.Errorf("endpoint not back on the bridge: master %q", m)
		}
		if v, _ := e.d.sysctls.Get("net/ipv4/conf/usr0/route_localnet"); v != "1" {
			t.Errorf("route_localnet=%q on the bridge once back, want 1", v)
		}
		if got := e.repaired(); got[RepairLinks] != 1 {
			t.Errorf("OnRepair heard %v, want one links repair", got)
		}
		e.deleteNetworks(netA)
		if ok, _ := link.Exists("usr0"); !ok {
			t.Fatal("docker network rm deleted the user's bridge")
		}
		if alias := link.Alias("usr0"); alias != "" {
			t.Errorf("the user's bridge carries mark %q", alias)
		}
		if left := e.leftovers(); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}
