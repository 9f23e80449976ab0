package blackbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mynet/mynet/internal/testutil"
)

// TestSocketTakeoverRefused starts a second mynet aimed at the first one's
// sockets and state file, and at files that are not sockets: each attempt
// must exit naming the path and why, and leave the path as it was, the first
// daemon still answering on its socket.
func TestSocketTakeoverRefused(t *testing.T) {
	d := startDaemon(t)
	if status, out := d.post(t, "/IpamDriver.RequestPool", []byte(`{"AddressSpace":"LocalDefault","Pool":"10.85.0.0/24"}`)); status != 200 {
		t.Fatalf("request pool: %d %s", status, out)
	}
	other := t.TempDir()
	keep := testutil.WriteFile(t, filepath.Join(other, "keep.txt"), "not mine")
	fileSock := testutil.WriteFile(t, filepath.Join(other, "plugins", "hx.sock"), "a file")
	fileSockDir := filepath.Dir(fileSock)

	own := func(name string) []string { // a state and sockets of its own
		return []string{"--name", name, "--socket-dir", filepath.Join(other, "sock"), "--state", filepath.Join(other, name+".db")}
	}
	for _, tc := range []struct {
		name   string
		args   []string
		target string // the path that must survive
		says   string
	}{
		{"same --name and --socket-dir", []string{"--name", daemonName, "--socket-dir", filepath.Dir(d.sock), "--state", filepath.Join(other, "b.db")}, d.sock, "in use"},
		{"plugin socket on the other's admin socket", []string{"--name", daemonName + ".db", "--socket-dir", filepath.Dir(d.state), "--state", filepath.Join(other, "c.db")}, d.admin, "in use"},
		{"--metrics on the other's plugin socket", append(own("m1"), "--metrics", "unix:"+d.sock), d.sock, "in use"},
		{"--metrics on the other's admin socket", append(own("m2"), "--metrics", "unix:"+d.admin), d.admin, "in use"},
		{"--metrics on the other's state file", append(own("m3"), "--metrics", "unix:"+d.state), d.state, "not a socket"},
		{"--metrics on a regular file", append(own("m4"), "--metrics", "unix:"+keep), keep, "not a socket"},
		{"plugin socket path is a regular file", []string{"--name", "hx", "--socket-dir", fileSockDir, "--state", filepath.Join(other, "e.db")}, fileSock, "not a socket"},
	} {
		before, err := os.Lstat(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		out, code := mynet(t, append([]string{"--firewall-check", "1h"}, tc.args...)...)
		if code != 1 || !strings.Contains(out, tc.target) || !strings.Contains(out, tc.says) {
			t.Errorf("%s: exit %d, want 1 with a message naming %s and saying %q:\n%s", tc.name, code, tc.target, tc.says, out)
		}
		if !testutil.Unchanged(tc.target, before) {
			t.Errorf("%s: %s was removed or replaced", tc.name, tc.target)
		}
	}
	if b, _ := os.ReadFile(keep); string(b) != "not mine" {
		t.Errorf("%s changed: %q", keep, b)
	}
	// The first daemon still owns its socket: it knows the pool it handed out.
	if status, out := d.post(t, "/IpamDriver.RequestAddress", []byte(`{"PoolID":"LocalDefault/10.85.0.0/24"}`)); status != 200 {
		t.Fatalf("the first daemon no longer answers on %s: %d %s\n%s", d.sock, status, out, d.log())
	}
}
