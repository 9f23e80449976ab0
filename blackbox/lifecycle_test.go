package blackbox

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/state"
)

// A stale socket (as a crash leaves it) does not stop a start; a second
// instance on the same state gives up at once and says why; SIGTERM removes
// the socket and closes the state file with what was allocated in it.
func TestDaemonLockStaleSocketAndGracefulStop(t *testing.T) {
	first := newDaemon(t)
	if err := os.MkdirAll(filepath.Dir(first.sock), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", first.sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	first.start(t)
	if !first.running() {
		t.Fatalf("daemon did not start over a stale socket:\n%s", first.log())
	}
	st, _ := os.Stat(first.sock)
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("socket mode %v is open to others", st.Mode().Perm())
	}

	start := time.Now()
	out, code := mynet(t, "--name", "second", "--socket-dir", filepath.Dir(first.sock), "--state", first.state)
	if code != 1 || !strings.Contains(out, "in use by another mynet") {
		t.Fatalf("second instance: exit %d, want 1\n%s", code, out)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("second instance took %v to give up", time.Since(start))
	}

	if msg := first.call(t, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.71.0.0/24"}`); msg != "" {
		t.Fatalf("request pool: %s", msg)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, first.log())
	}
	if _, err := os.Stat(first.sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	s, err := state.Open(first.state, state.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("state after stop: %v", err)
	}
	defer s.Close()
	s.View(func(tx *state.Tx) error {
		if _, ok, _ := tx.Pool("LocalDefault/10.71.0.0/24"); !ok {
			t.Error("pool allocated before SIGTERM is not in the state file")
		}
		return nil
	})
}

// The inspection commands read the daemon's view over the admin socket while
// it runs, and the state file itself when it does not.
func TestInspectionCommands(t *testing.T) {
	d := startDaemon(t)
	for _, call := range []struct{ path, json string }{
		{"/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.72.0.0/24"}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.72.0.0/24"}`},
	} {
		if msg := d.call(t, call.path, call.json); msg != "" {
			t.Fatalf("%s: %s", call.path, msg)
		}
	}
	pools := func() (string, []map[string]any) {
		out, code := mynet(t, "pools", "--state", d.state, "--json")
		if code != 0 {
			t.Fatalf("mynet pools: exit %d\n%s", code, out)
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("pools --json: %v\n%s", err, out)
		}
		table, _ := mynet(t, "pools", "--state", d.state)
		return table, rows
	}
	table, rows := pools()
	if len(rows) != 1 || rows[0]["Used"] != float64(1) || rows[0]["Size"] != float64(254) {
		t.Fatalf("pools from the daemon: %v", rows)
	}
	if !strings.Contains(table, "10.72.0.0/24") || !strings.Contains(table, "0.4%") {
		t.Fatalf("pools table:\n%s", table)
	}
	d.stop()
	if _, rows = pools(); len(rows) != 1 || rows[0]["Used"] != float64(1) {
		t.Fatalf("pools from the state file: %v", rows)
	}
	if out, code := mynet(t, "endpoints", "nosuchnet", "--state", d.state); code != 3 {
		t.Fatalf("endpoints of a missing network: exit %d\n%s", code, out)
	}
	if out, code := mynet(t, "networks", "--state", filepath.Join(d.dir, "absent.db")); code != 1 || !strings.Contains(out, "no state file") {
		t.Fatalf("missing state: exit %d\n%s", code, out)
	}
}
