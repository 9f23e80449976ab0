package driver

import (
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/link"
)

// A bridge deleted by hand takes with it what its rules need of it
// (route_localnet, for 127.0.0.1 published ports): a rebuild re-adds the
// rules of a re-created bridge even though they were all still there.
func TestRecreatedBridgeGetsWhatItsRulesNeed(t *testing.T) {
	inNetns(t, func(e *env) {
		const br = "mn-aaaaaaaaaaaa"
		e.createNetwork(netA, "10.93.0.0/24", "10.93.0.1/24", nil)
		routeLocalnet := func(when string) {
			t.Helper()
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + br + "/route_localnet")
			if v := strings.TrimSpace(string(b)); err != nil || v != "1" {
				t.Errorf("%s: route_localnet on %s = %q (%v), want 1", when, br, v, err)
			}
		}
		routeLocalnet("after create")

		if err := link.Delete(br); err != nil {
			t.Fatal(err)
		}
		e.restart()
		routeLocalnet("after a restart")
		if got, want := e.repaired(), map[string]int{RepairLinks: 1}; !maps.Equal(got, want) {
			t.Errorf("OnRepair heard %v, want %v (the rules were there)", got, want)
		}

		if err := link.Delete(br); err != nil {
			t.Fatal(err)
		}
		for _, d := range e.d.Doctor(drift.View{}, false, drift.FixAll, 0) {
			if !d.Fixed {
				t.Errorf("doctor --fix: %+v", d)
			}
		}
		routeLocalnet("after doctor --fix")
	})
}

// Rules that survive a reboot (iptables-persistent) while the bridge and
// the kernel's settings come back fresh: a start sets what the rules need
// (route_localnet for -p 127.0.0.1, bridged traffic through iptables for
// enable_icc=false) whether or not the rules are there.
func TestRestartSetsSysctlsWhenRulesExist(t *testing.T) {
	inNetns(t, func(e *env) {
		userBridge(t, "usr0")
		e.createNetwork(netA, "10.99.0.0/24", "10.99.0.1/24", map[string]any{optBridgeName: "usr0", optICC: "false"})
		keys := []string{"net/ipv4/conf/usr0/route_localnet", "net/bridge/bridge-nf-call-iptables"}
		for _, key := range keys {
			if err := os.WriteFile("/proc/sys/"+key, []byte("0"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if owned, _ := e.d.fw.Owned(); len(owned) != 1 {
			t.Fatalf("rules before the start: %v", owned)
		}
		e.restart()
		for _, key := range keys {
			if v, err := e.d.sysctls.Get(key); err != nil || v != "1" {
				t.Errorf("%s = %q (%v) after the start, want 1", key, v, err)
			}
		}
	})
}
