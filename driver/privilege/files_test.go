package privilege

import (
	"os"
	"strings"
	"testing"
)

// The plugin socket, the admin socket and the state file are root's alone,
// and the daemon listens on no TCP port until a port is published.
func TestSocketsAndStateArePrivate(t *testing.T) {
	d := start(t, binary(t), nil)
	if !d.running() {
		t.Fatalf("daemon exited:\n%s", d.out)
	}
	for _, f := range []string{d.sock, d.state + ".sock", d.state} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, perm)
		}
	}
	if l := tcpListeners(t, d); len(l) != 0 {
		t.Errorf("TCP listeners in the daemon's netns with nothing published: %v", l)
	}
	if msg := d.post(t, "/NetworkDriver.CreateNetwork", network("cccc", "10.91.0.0/24")); msg != "" {
		t.Fatal(msg)
	}
	if msg := d.post(t, "/NetworkDriver.CreateEndpoint", endpoint("cccc", "ee01", "10.91.0.2/24")); msg != "" {
		t.Fatal(msg)
	}
	if l := tcpListeners(t, d); len(l) != 0 {
		t.Errorf("TCP listeners with a network and an endpoint but nothing published: %v", l)
	}
	if msg := d.post(t, "/NetworkDriver.ProgramExternalConnectivity", publish("cccc", "ee01", 8080)); msg != "" {
		t.Fatal(msg)
	}
	if l := tcpListeners(t, d); strings.Join(l, " ") != "1F90 1F90" { // 8080 on 0.0.0.0 and ::
		t.Errorf("TCP listeners after publishing 8080: %v, want port 1F90 once per family", l)
	}
}

// tcpListeners lists the hex ports in LISTEN state (0A) in /proc/net/tcp and
// tcp6 of the daemon's network namespace.
func tcpListeners(t *testing.T, d *daemon) []string {
	var ports []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, line := range strings.Split(d.inNetns(t, "cat", f), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 3 && fields[3] == "0A" {
				ports = append(ports, fields[1][strings.LastIndex(fields[1], ":")+1:])
			}
		}
	}
	return ports
}
