package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	hNet = "abcdefabcdef0000000000000000000000000000000000000000000000000000"
	hEp  = "fedcbafedcba0000000000000000000000000000000000000000000000000000"
)

// createNet is a CreateNetwork body for a bridge network on 10.99.0.0/24.
func createNet(id string) string {
	return fmt.Sprintf(`{"NetworkID":%q,"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.99.0.0/24","Gateway":"10.99.0.1/24"}]}`, id)
}

// capsRow is one capability set the daemon runs with, and what must work.
type capsRow struct {
	caps string // setpriv --bounding-set: what the daemon (and the iptables it runs) may use
	// Expected outcome of each step: "" works, else a substring of the error.
	start, network, endpoint, port8080, port80 string
}

// The capability table of integration/plugin/README.md, asserted: the
// daemon runs in a fresh netns with only these capabilities.
var capsTable = []capsRow{
	{caps: "-all", start: "permission denied"}, // not even reading the firewall at start
	{caps: "-all,+net_admin", port80: "permission denied"},
	{caps: "-all,+net_admin,+net_bind_service"},
}

func TestCapabilities(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to run the daemon with fewer capabilities")
	}
	bin := buildBinary(t)
	for _, row := range capsTable {
		t.Run(row.caps, func(t *testing.T) {
			dir := t.TempDir()
			d := &daemon{out: &syncBuffer{}, sock: filepath.Join(dir, "sock", "mt.sock")}
			d.cmd = exec.Command("unshare", "-n", "setpriv", "--inh-caps=-all", "--bounding-set="+row.caps, "--",
				bin, "--name", "mt", "--socket-dir", filepath.Join(dir, "sock"), "--state", filepath.Join(dir, "state.db"))
			d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
			if err := d.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if row.start != "" {
				err := d.cmd.Wait()
				if err == nil || !strings.Contains(strings.ToLower(d.out.String()), row.start) {
					t.Errorf("start with %s: %v, want a failure saying %q:\n%s", row.caps, err, row.start, d.out)
				}
				return
			}
			t.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
			c := d.waitServing(t)
			call := func(path, body string) string {
				r, err := c.Post("http://p"+path, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				defer r.Body.Close()
				if r.StatusCode == http.StatusOK {
					return ""
				}
				raw, _ := io.ReadAll(r.Body)
				var e struct{ Err string }
				json.Unmarshal(raw, &e)
				return e.Err
			}
			check := func(step, want, got string) bool {
				t.Helper()
				if (want == "") != (got == "") || !strings.Contains(strings.ToLower(got), want) {
					t.Errorf("%s with %s: got %q, want %s", step, row.caps, got, map[bool]string{true: "success", false: "an error with " + fmt.Sprintf("%q", want)}[want == ""])
				}
				return got == ""
			}
			if !check("create bridge network (bridge, sysctls, iptables)", row.network, call("/NetworkDriver.CreateNetwork", createNet(hNet))) {
				return
			}
			if !check("create endpoint (veth)", row.endpoint, call("/NetworkDriver.CreateEndpoint",
				`{"NetworkID":"`+hNet+`","EndpointID":"`+hEp+`","Interface":{"Address":"10.99.0.2/24"}}`)) {
				return
			}
			for _, p := range []struct {
				port int
				want string
			}{{8080, row.port8080}, {80, row.port80}} {
				body := fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q,"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":%d}]}}`, hNet, hEp, p.port)
				got := call("/NetworkDriver.ProgramExternalConnectivity", body)
				if check(fmt.Sprintf("publish host port %d", p.port), p.want, got) {
					call("/NetworkDriver.RevokeExternalConnectivity", fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q}`, hNet, hEp))
				}
			}
		})
	}
}
