package hostile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	netID = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	epID  = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"
)

func (d *daemon) call(t *testing.T, path, body string) string {
	t.Helper()
	status, out := d.post(t, path, []byte(body))
	if status == 200 {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func createNetwork(t *testing.T, d *daemon) string {
	return d.call(t, "/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.generic":{}},`+
		`"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.80.0.0/24","Gateway":"10.80.0.1/24"}]}`)
}

func createEndpoint(t *testing.T, d *daemon) string {
	return d.call(t, "/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.80.0.2/24"}}`)
}

func publish(t *testing.T, d *daemon, hostPort int) string {
	return d.call(t, "/NetworkDriver.ProgramExternalConnectivity", fmt.Sprintf(`{"NetworkID":"%s","EndpointID":"%s",`+
		`"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":%d}]}}`, netID, epID, hostPort))
}

func unpublish(t *testing.T, d *daemon) string {
	return d.call(t, "/NetworkDriver.RevokeExternalConnectivity", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`)
}

// capRow is one iptables-legacy row of the capability table in
// integration/plugin/README.md: the daemon run as root with its bounding set
// cut to bounding and iptables-legacy first on PATH (as the plugin's
// entrypoint does on legacy hosts), and what each operation answers ("" =
// works, else a word of the expected error).
type capRow struct {
	name, bounding string
	legacy         bool   // iptables-legacy first on PATH, as the plugin's entrypoint does
	network        string // CreateNetwork: bridge, addresses, iptables, sysctls
	endpoint       string // CreateEndpoint: veth pair
	highPort       string // publish host port 8080
	lowPort        string // publish host port 80
}

var capTable = []capRow{
	// iptables-legacy reaches the kernel through a raw socket: without
	// CAP_NET_RAW no rule can be written (nf_tables needs only NET_ADMIN,
	// driver/privilege).
	{name: "NET_ADMIN, iptables-legacy", bounding: "-all,+net_admin", network: "unable to initialize table 'filter'"},
	{name: "NET_ADMIN + NET_RAW, iptables-legacy", bounding: "-all,+net_admin,+net_raw", lowPort: "CAP_NET_BIND_SERVICE"},
	{name: "plugin-config.json, iptables-legacy", bounding: "-all,+net_admin,+net_bind_service,+net_raw"},
}

// TestLegacyIptablesCapabilities runs the real daemon as root in a fresh
// netns under setpriv and checks each row of capTable.
func TestLegacyIptablesCapabilities(t *testing.T) {
	for _, row := range capTable {
		t.Run(row.name, func(t *testing.T) {
			d := startDaemon(t, "env", "PATH="+legacyPath(t)+":"+os.Getenv("PATH"),
				"setpriv", "--bounding-set", row.bounding, "--inh-caps", "-all")
			check := func(op, got, want string) {
				if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
					t.Errorf("%s: %q, want %q", op, got, want)
				}
			}
			check("create network", createNetwork(t, d), row.network)
			if row.network != "" {
				return
			}
			check("create endpoint", createEndpoint(t, d), row.endpoint)
			check("publish 8080", publish(t, d, 8080), row.highPort)
			if row.highPort == "" {
				check("unpublish 8080", unpublish(t, d), "")
			}
			check("publish 80", publish(t, d, 80), row.lowPort)
			if !strings.Contains(d.inNetns(t, "iptables-legacy-save"), "MYNET-FORWARD") {
				t.Error("no rules in iptables-legacy")
			}
			if fwd := strings.TrimSpace(d.inNetns(t, "sysctl", "-n", "net.ipv4.ip_forward")); row.network == "" && fwd != "1" {
				t.Errorf("net.ipv4.ip_forward = %s after a network was created", fwd)
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
