package privilege

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func id64(short string) string { return strings.Repeat(short, 64/len(short)) }

func network(id, subnet string) string {
	gw := strings.TrimSuffix(subnet, "0/24") + "1/24"
	return fmt.Sprintf(`{"NetworkID":%q,"Options":{"com.docker.network.generic":{}},"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":%q,"Gateway":%q}]}`, id64(id), subnet, gw)
}

func endpoint(netID, epID, addr string) string {
	return fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q,"Interface":{"Address":%q}}`, id64(netID), id64(epID), addr)
}

func publish(netID, epID string, hostPort int) string {
	return fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q,"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":%d}]}}`, id64(netID), id64(epID), hostPort)
}

// capRow is one capability set and what the daemon can do with it. Each
// want is "" (works) or a piece of the error. The daemon runs as uid 0 with
// setpriv --bounding-set caps --inh-caps -all, so its permitted and
// effective sets are exactly caps.
type capRow struct {
	caps        string // setpriv --bounding-set list after -all
	unprivPort0 bool   // net.ipv4.ip_unprivileged_port_start=0 in its netns
	start       string // daemon start (iptables chains, state, sockets)
	bridge      string // CreateNetwork: bridge link, address, iptables rules, sysctls
	endpoint    string // CreateEndpoint: veth pair
	port8080    string // published port 8080 (held socket, DNAT rules)
	port80      string // published port 80
}

var capTable = []capRow{
	{caps: "", start: "Permission denied"},
	{caps: "+net_raw", start: "Permission denied"},
	{caps: "+net_bind_service", start: "Permission denied"},
	{caps: "+net_admin", port80: "permission denied (ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE)"},
	{caps: "+net_admin", unprivPort0: true},
	{caps: "+net_admin,+net_bind_service"},
}

// TestCapabilityTable is the table in integration/plugin/README.md: which
// daemon operations fail without which capability.
func TestCapabilityTable(t *testing.T) {
	bin := binary(t)
	for _, row := range capTable {
		name := "caps=" + row.caps
		if row.unprivPort0 {
			name += ",ip_unprivileged_port_start=0"
		}
		t.Run(name, func(t *testing.T) {
			d := start(t, bin, []string{"setpriv", "--inh-caps=-all", "--bounding-set=-all" + strings.TrimSuffix(","+row.caps, ","), "--"})
			if row.start != "" {
				if d.running() || !strings.Contains(d.out.String(), row.start) {
					t.Fatalf("start: running=%v, want an exit with %q:\n%s", d.running(), row.start, d.out)
				}
				return
			}
			if !d.running() {
				t.Fatalf("start failed:\n%s", d.out)
			}
			if row.unprivPort0 {
				d.inNetns(t, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
			}
			check := func(what, want, msg string) {
				t.Helper()
				if (want == "") != (msg == "") || !strings.Contains(msg, want) {
					t.Errorf("%s: got %q, want %q (\"\" = success)", what, msg, want)
				}
			}
			check("bridge network", row.bridge, d.post(t, "/NetworkDriver.CreateNetwork", network("ab", "10.92.0.0/24")))
			check("endpoint", row.endpoint, d.post(t, "/NetworkDriver.CreateEndpoint", endpoint("ab", "e1", "10.92.0.2/24")))
			check("endpoint 2", row.endpoint, d.post(t, "/NetworkDriver.CreateEndpoint", endpoint("ab", "e2", "10.92.0.3/24")))
			check("port 8080", row.port8080, d.post(t, "/NetworkDriver.ProgramExternalConnectivity", publish("ab", "e1", 8080)))
			check("port 80", row.port80, d.post(t, "/NetworkDriver.ProgramExternalConnectivity", publish("ab", "e2", 80)))
			if rules := d.inNetns(t, "iptables-save", "-t", "nat"); !strings.Contains(rules, "--dport 8080") {
				t.Errorf("no DNAT rule for 8080:\n%s", rules)
			}
			if fwd := strings.TrimSpace(d.inNetns(t, "cat", "/proc/sys/net/ipv4/ip_forward")); fwd != "1" {
				t.Errorf("ip_forward %s: the bridge network's sysctl was not written", fwd)
			}
		})
	}
}

// TestSysctlWrites: as uid 0 in a fresh network namespace, ip_forward takes
// a write only with CAP_NET_ADMIN; a per-interface sysctl takes it without.
func TestSysctlWrites(t *testing.T) {
	for _, c := range []struct {
		caps, file string
		ok         bool
	}{
		{"", "/proc/sys/net/ipv4/ip_forward", false},
		{"+net_admin", "/proc/sys/net/ipv4/ip_forward", true},
		{"", "/proc/sys/net/ipv4/conf/lo/route_localnet", true},
	} {
		out, err := exec.Command("unshare", "-n", "setpriv", "--inh-caps=-all", "--bounding-set=-all"+strings.TrimSuffix(","+c.caps, ","),
			"--", "sh", "-c", "echo 1 > "+c.file).CombinedOutput()
		if (err == nil) != c.ok {
			t.Errorf("caps %q, write %s: err %v %s, want success=%v", c.caps, c.file, err, out, c.ok)
		}
	}
}
