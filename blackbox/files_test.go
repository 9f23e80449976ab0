package blackbox

import (
	"os"
	"strings"
	"testing"
)

// The plugin socket, the admin socket and the state file are root's alone,
// and the daemon listens on no TCP port until a port is published.
func TestSocketsAndStateArePrivate(t *testing.T) {
	d := startDaemon(t)
	for _, f := range []string{d.sock, d.admin, d.state} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, perm)
		}
	}
	if l := d.tcpListeners(t); len(l) != 0 {
		t.Errorf("TCP listeners in the daemon's netns with nothing published: %v", l)
	}
	if msg := d.call(t, "/NetworkDriver.CreateNetwork", network("cccc", "10.91.0.0/24")); msg != "" {
		t.Fatal(msg)
	}
	if msg := d.call(t, "/NetworkDriver.CreateEndpoint", endpoint("cccc", "ee01", "10.91.0.2/24")); msg != "" {
		t.Fatal(msg)
	}
	if l := d.tcpListeners(t); len(l) != 0 {
		t.Errorf("TCP listeners with a network and an endpoint but nothing published: %v", l)
	}
	if msg := d.call(t, "/NetworkDriver.ProgramExternalConnectivity", publish("cccc", "ee01", 8080)); msg != "" {
		t.Fatal(msg)
	}
	if l := d.tcpListeners(t); strings.Join(l, " ") != "1F90 1F90" { // 8080 on 0.0.0.0 and ::
		t.Errorf("TCP listeners after publishing 8080: %v, want port 1F90 once per family", l)
	}
}
