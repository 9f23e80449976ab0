package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/state"
)

// daemon runs the built binary in a fresh network namespace (unshare -n),
// so it never touches the host's links or iptables.
type daemon struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	sock string
}

// syncBuffer is the daemon's output, readable while it still writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mynet")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func startDaemon(t *testing.T, bin, dir string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{out: &syncBuffer{}, sock: filepath.Join(dir, "sock", "mt.sock")}
	args := append([]string{"-n", bin, "--name", "mt", "--socket-dir", filepath.Join(dir, "sock"),
		"--state", filepath.Join(dir, "state.db"), "--log-level", "debug"}, extra...)
	d.cmd = exec.Command("unshare", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	return d
}

func (d *daemon) waitServing(t *testing.T) *http.Client {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.sock)
	}}}
	for i := 0; i < 100; i++ {
		if r, err := c.Post("http://p/Plugin.Activate", "", nil); err == nil {
			r.Body.Close()
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("daemon never served %s:\n%s", d.sock, d.out)
	return nil
}

func TestDaemonLockStaleSocketAndGracefulStop(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed to run the daemon in its own network namespace")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	// A stale socket file, as a crash leaves it.
	os.MkdirAll(filepath.Join(dir, "sock"), 0o755)
	ln, err := net.Listen("unix", filepath.Join(dir, "sock", "mt.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	first := startDaemon(t, bin, dir)
	c := first.waitServing(t)
	st, _ := os.Stat(first.sock)
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("socket mode %v is open to others", st.Mode().Perm())
	}

	// A second instance on the same state exits at once and says why.
	start := time.Now()
	out, err := exec.Command("unshare", "-n", bin, "--name", "mt2", "--socket-dir", filepath.Join(dir, "sock"),
		"--state", filepath.Join(dir, "state.db")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another mynet") {
		t.Fatalf("second instance: %v %s", err, out)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("second instance took %v to give up", time.Since(start))
	}

	// SIGTERM: the socket goes away and the state is closed (reopenable).
	r, err := c.Post("http://p/IpamDriver.RequestPool", "", strings.NewReader(`{"AddressSpace":"LocalDefault","Pool":"10.71.0.0/24"}`))
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("request pool: %v %v", err, r)
	}
	r.Body.Close()
	first.cmd.Process.Signal(syscall.SIGTERM)
	if err := first.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, first.out)
	}
	if _, err := os.Stat(first.sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	s, err := state.Open(filepath.Join(dir, "state.db"), state.Options{LockTimeout: 100 * time.Millisecond})
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

func TestFlagsAndEnvironment(t *testing.T) {
	t.Setenv("MYNET_NAME", "fromenv")
	t.Setenv("MYNET_LOG_LEVEL", "debug")
	c, err := parseFlags(nil)
	if err != nil || c.name != "fromenv" || c.logLevel != "debug" || c.state != "/var/lib/mynet/mynet.db" {
		t.Fatalf("env defaults: %+v %v", c, err)
	}
	c, err = parseFlags([]string{"--name", "flag"})
	if err != nil || c.name != "flag" {
		t.Fatalf("flag over env: %+v %v", c, err)
	}
	if _, err := parseFlags([]string{"--name", "a/b"}); err == nil {
		t.Fatal("name with / accepted")
	}
	if _, err := newLogger("loud", "text"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad level: %v", err)
	}
}

// The inspection commands read the daemon's view over the admin socket while
// it runs, and the state file itself when it does not.
func TestInspectionCommands(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	d := startDaemon(t, bin, dir)
	c := d.waitServing(t)
	for _, body := range []struct{ path, json string }{
		{"/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.72.0.0/24"}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.72.0.0/24"}`},
	} {
		r, err := c.Post("http://p"+body.path, "", strings.NewReader(body.json))
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("%s: %v %v", body.path, err, r)
		}
		r.Body.Close()
	}
	state := filepath.Join(dir, "state.db")
	pools := func() (string, []map[string]any) {
		out, err := exec.Command(bin, "pools", "--state", state, "--json").CombinedOutput()
		if err != nil {
			t.Fatalf("mynet pools: %v\n%s", err, out)
		}
		var rows []map[string]any
		if err := json.Unmarshal(out, &rows); err != nil {
			t.Fatalf("pools --json: %v\n%s", err, out)
		}
		table, _ := exec.Command(bin, "pools", "--state", state).CombinedOutput()
		return string(table), rows
	}
	table, rows := pools()
	if len(rows) != 1 || rows[0]["Used"] != float64(1) || rows[0]["Size"] != float64(254) {
		t.Fatalf("pools from the daemon: %v", rows)
	}
	if !strings.Contains(table, "10.72.0.0/24") || !strings.Contains(table, "0.4%") {
		t.Fatalf("pools table:\n%s", table)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if _, rows = pools(); len(rows) != 1 || rows[0]["Used"] != float64(1) {
		t.Fatalf("pools from the state file: %v", rows)
	}
	out, err := exec.Command(bin, "endpoints", "nosuchnet", "--state", state).CombinedOutput()
	if code := exitCode(err); code != 3 {
		t.Fatalf("endpoints of a missing network: exit %d (%v)\n%s", code, err, out)
	}
	out, err = exec.Command(bin, "networks", "--state", filepath.Join(dir, "absent.db")).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "no state file") {
		t.Fatalf("missing state: exit %d\n%s", code, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
