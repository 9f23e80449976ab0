package driver

import (
	"encoding/json"
	"testing"

	"github.com/mynet/mynet/driver/link"
)

// FuzzNetworkOptions: any option map either is refused or yields a config
// whose names are safe to hand to netlink and iptables.
func FuzzNetworkOptions(f *testing.F) {
	for _, seed := range []string{
		`{"com.docker.network.bridge.name":"br0","mtu":"1400"}`,
		`{"backend":"macvlan","parent":"eth1.10","macvlan_mode":"private"}`,
		`{"backend":"ipvlan","parent":"eth1","ipvlan_mode":"l3","ipvlan_flag":"vepa"}`,
		`{"com.docker.network.bridge.name":"-j ACCEPT"}`,
		`{"parent":"../../etc","backend":"macvlan"}`,
		`{"com.docker.network.bridge.enable_icc":"false","com.docker.network.bridge.host_binding_ipv4":"127.0.0.1"}`,
		`{"com.docker.network.container_iface_prefix":"eth\n0"}`,
	} {
		f.Add(seed, false, true)
	}
	f.Fuzz(func(t *testing.T, generic string, ipv6, internal bool) {
		var g map[string]any
		if json.Unmarshal([]byte(generic), &g) != nil {
			g = map[string]any{"x": generic}
		}
		cfg, err := parseNetworkOptions(map[string]any{optGeneric: g, optEnableIPv6: ipv6, optInternal: internal})
		if err != nil {
			return
		}
		for _, name := range []string{cfg.Bridge, cfg.Parent} {
			if name != "" {
				if err := link.ValidName(name); err != nil {
					t.Fatalf("accepted unsafe interface name %q: %v", name, err)
				}
			}
		}
		if !contains(validBackends, cfg.Backend) {
			t.Fatalf("accepted backend %q", cfg.Backend)
		}
		if cfg.MTU != 0 && (cfg.MTU < 68 || cfg.MTU > 65535) {
			t.Fatalf("accepted MTU %d", cfg.MTU)
		}
		for _, r := range cfg.IfPrefix {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				t.Fatalf("accepted prefix %q", cfg.IfPrefix)
			}
		}
	})
}
