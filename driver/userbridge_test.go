package driver

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
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
			for _, id := range []string{netA, netB} {
				if err := e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: id}); err != nil {
					t.Fatal(err)
				}
			}
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
		read := func() string {
			t.Helper()
			v, err := e.d.sysctls.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		if v := read(); v != "0" {
			t.Fatalf("a new bridge has route_localnet=%s", v)
		}
		e.createNetwork(netA, "10.74.0.0/24", "10.74.0.1/24", map[string]any{optBridgeName: "usr0"})
		if v := read(); v != "1" {
			t.Fatalf("route_localnet=%s on the network's bridge, want 1", v)
		}
		e.restart()
		if err := e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: netA}); err != nil {
			t.Fatal(err)
		}
		if v := read(); v != "0" {
			t.Errorf("route_localnet=%s after the network went, want 0 as before", v)
		}

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
		if v := read(); v != "1" {
			t.Fatalf("route_localnet=%s after the start, want 1", v)
		}
		e.restart()
		if err := e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: netB}); err != nil {
			t.Fatal(err)
		}
		if v := read(); v != "0" {
			t.Errorf("route_localnet=%s after the older network went, want 0 as the start found it", v)
		}
		if left := e.leftovers(); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}
