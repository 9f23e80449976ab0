package blackbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// capRow is one capability set and what the daemon can do with it. Each
// want is "" (works) or a piece of the error. The daemon runs as uid 0 with
// setpriv --bounding-set -all,CAPS --inh-caps -all, so its permitted and
// effective sets are exactly caps.
type capRow struct {
	caps        string // setpriv --bounding-set list after -all
	legacy      bool   // iptables-legacy first on PATH, as the plugin's entrypoint does on legacy hosts
	unprivPort0 bool   // net.ipv4.ip_unprivileged_port_start=0 in its netns
	start       string // daemon start (iptables chains, state, sockets)
	bridge      string // CreateNetwork: bridge link, address, iptables rules, sysctls
	endpoint    string // CreateEndpoint: veth pair
	port8080    string // published port 8080 (held socket, DNAT rules)
	port80      string // published port 80
}

const needBindService = "permission denied (ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE)"

var capTable = []capRow{
	{caps: "", start: "Permission denied"},
	{caps: "+net_raw", start: "Permission denied"},
	{caps: "+net_bind_service", start: "Permission denied"},
	{caps: "+net_admin", port80: needBindService},
	{caps: "+net_admin", unprivPort0: true},
	{caps: "+net_admin,+net_bind_service"},
	// iptables-legacy reaches the kernel through a raw socket: without
	// CAP_NET_RAW no rule can be written (nf_tables needs only NET_ADMIN).
	{caps: "+net_admin", legacy: true, bridge: "unable to initialize table 'filter'"},
	{caps: "+net_admin,+net_raw", legacy: true, port80: needBindService},
	{caps: "+net_admin,+net_bind_service,+net_raw", legacy: true}, // plugin-config.json
}

// TestCapabilityTable is the table in integration/plugin/README.md: which
// daemon operations fail without which capability, with either iptables.
func TestCapabilityTable(t *testing.T) {
	for _, row := range capTable {
		name := "caps=" + row.caps
		if row.legacy {
			name += ",iptables-legacy"
		}
		if row.unprivPort0 {
			name += ",ip_unprivileged_port_start=0"
		}
		t.Run(name, func(t *testing.T) {
			d := newDaemon(t)
			d.wrap = []string{"setpriv", "--inh-caps=-all", "--bounding-set=-all" + strings.TrimSuffix(","+row.caps, ","), "--"}
			save := "iptables-save"
			if row.legacy {
				d.wrap = append([]string{"env", "PATH=" + legacyPath(t) + ":" + os.Getenv("PATH")}, d.wrap...)
				save = "iptables-legacy-save"
			}
			d.start(t)
			if row.start != "" {
				if d.running() || !strings.Contains(d.log(), row.start) {
					t.Fatalf("start: running=%v, want an exit with %q:\n%s", d.running(), row.start, d.log())
				}
				return
			}
			if !d.running() {
				t.Fatalf("start failed:\n%s", d.log())
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
			check("bridge network", row.bridge, d.call(t, "/NetworkDriver.CreateNetwork", network("ab", "10.92.0.0/24")))
			if row.bridge != "" {
				return
			}
			check("endpoint", row.endpoint, d.call(t, "/NetworkDriver.CreateEndpoint", endpoint("ab", "e1", "10.92.0.2/24")))
			check("endpoint 2", row.endpoint, d.call(t, "/NetworkDriver.CreateEndpoint", endpoint("ab", "e2", "10.92.0.3/24")))
			check("port 8080", row.port8080, d.call(t, "/NetworkDriver.ProgramExternalConnectivity", publish("ab", "e1", 8080)))
			if rules := d.inNetns(t, save); !strings.Contains(rules, "MYNET-FORWARD") {
				t.Errorf("no MYNET-FORWARD chain in %s:\n%s", save, rules)
			}
			if row.port8080 == "" {
				if rules := d.inNetns(t, save, "-t", "nat"); !strings.Contains(rules, "--dport 8080") {
					t.Errorf("no DNAT rule for 8080 in %s:\n%s", save, rules)
				}
				check("unpublish 8080", "", d.call(t, "/NetworkDriver.RevokeExternalConnectivity", unpublish("ab", "e1")))
			}
			check("port 80", row.port80, d.call(t, "/NetworkDriver.ProgramExternalConnectivity", publish("ab", "e2", 80)))
			if fwd := strings.TrimSpace(d.inNetns(t, "cat", "/proc/sys/net/ipv4/ip_forward")); fwd != "1" {
				t.Errorf("ip_forward %s: the bridge network's sysctl was not written", fwd)
			}
		})
	}
}

// legacyPath is a directory whose iptables* commands are the legacy ones.
func legacyPath(t *testing.T) string {
	dir := t.TempDir()
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			target, err := exec.LookPath(fam + "-legacy" + suffix)
			if err != nil {
				t.Fatalf("%s-legacy%s is needed for the iptables-legacy rows: %v", fam, suffix, err)
			}
			if err := os.Symlink(target, filepath.Join(dir, fam+suffix)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
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
