package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds the real mynet command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mynet-hostile-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "mynet")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goBin, "build", "-o", builtBin, "github.com/mynet/mynet").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// daemon is the real binary running in a network namespace of its own
// (unshare -n), with its state file and sockets in a temporary directory.
type daemon struct {
	cmd         *exec.Cmd
	out         *syncBuffer
	dir, state  string
	sock, admin string
	client      *http.Client
}

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

// startDaemon runs wrap... bin --name hx ... ; wrap is a command prefix run
// inside the new namespace (setpriv to drop capabilities), or nothing.
func startDaemon(t *testing.T, wrap ...string) *daemon {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed to run the daemon in its own network namespace")
	}
	bin := binary(t)
	dir := t.TempDir()
	d := &daemon{out: &syncBuffer{}, dir: dir, state: filepath.Join(dir, "state", "hx.db")}
	d.sock = filepath.Join(dir, "sock", "hx.sock")
	d.admin = d.state + ".sock"
	if err := os.MkdirAll(filepath.Dir(d.state), 0o700); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-n"}, wrap...)
	args = append(args, bin, "--name", "hx", "--socket-dir", filepath.Dir(d.sock), "--state", d.state, "--log-level", "debug",
		"--firewall-check", "1h") // no periodic repair between snapshots
	d.cmd = exec.Command("unshare", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	d.client = unixClient(d.sock)
	for i := 0; i < 100; i++ {
		if r, err := d.client.Post("http://p/Plugin.Activate", "", nil); err == nil {
			r.Body.Close()
			return d
		}
		if d.exited() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("daemon never served %s:\n%s", d.sock, d.out)
	return nil
}

func (d *daemon) exited() bool {
	p, err := os.FindProcess(d.cmd.Process.Pid)
	return err != nil || p.Signal(syscall.Signal(0)) != nil
}

func (d *daemon) stop() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// post sends one raw request and returns the status and body.
func (d *daemon) post(t *testing.T, path string, body []byte) (int, []byte) {
	t.Helper()
	r, err := d.client.Post("http://p"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v\n%s", path, err, d.out)
	}
	defer r.Body.Close()
	out, _ := io.ReadAll(r.Body)
	return r.StatusCode, out
}

// inNetns runs a command in the daemon's network namespace.
func (d *daemon) inNetns(t *testing.T, args ...string) string {
	t.Helper()
	full := append([]string{"-t", fmt.Sprint(d.cmd.Process.Pid), "-n"}, args...)
	out, err := exec.Command("nsenter", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// What moves on its own: rule counters, bridge timers, IPv6 DAD state, and
// carrier (a bridge loses it when its first port, a veth without a peer up,
// joins).
var (
	counters = regexp.MustCompile(`\[\d+:\d+\]`)
	timers   = regexp.MustCompile(`(_timer)\s+[0-9.]+`)
	dad      = regexp.MustCompile(` tentative\b`)
	carrier  = regexp.MustCompile(`NO-CARRIER,|,M-DOWN| state [A-Z]+| linkdown`)
)

// kernel is everything a request could change in the namespace, as text.
func (d *daemon) kernel(t *testing.T) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, c := range [][]string{
		{"ip", "-d", "link"}, {"ip", "addr"}, {"ip", "route"}, {"ip", "-6", "route"},
		{"iptables-save"}, {"ip6tables-save"},
		{"sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"},
	} {
		out := d.inNetns(t, c...)
		if strings.HasSuffix(c[0], "-save") {
			var keep []string
			for _, l := range strings.Split(out, "\n") {
				if !strings.HasPrefix(l, "#") {
					keep = append(keep, counters.ReplaceAllString(l, ""))
				}
			}
			out = strings.Join(keep, "\n")
		}
		out = carrier.ReplaceAllString(dad.ReplaceAllString(timers.ReplaceAllString(out, "$1"), ""), "")
		snap[strings.Join(c, " ")] = out
	}
	return snap
}

// store is the daemon's own view: networks, endpoints and IPAM pools, over
// its admin socket.
func (d *daemon) store(t *testing.T) string {
	t.Helper()
	r, err := unixClient(d.admin).Get("http://mynet/v1/snapshot")
	if err != nil {
		t.Fatalf("admin snapshot: %v", err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("admin snapshot is not JSON: %v %s", err, b)
	}
	pretty, _ := json.MarshalIndent(v, "", " ")
	return string(pretty)
}

type snapshot struct {
	kernel map[string]string
	store  string
}

func (d *daemon) snapshot(t *testing.T) snapshot {
	return snapshot{kernel: d.kernel(t), store: d.store(t)}
}

// diff names what changed between two snapshots, "" if nothing.
func (a snapshot) diff(b snapshot) string {
	var out []string
	for k, v := range a.kernel {
		if b.kernel[k] != v {
			out = append(out, fmt.Sprintf("%s changed:\n--- before\n%s\n--- after\n%s", k, v, b.kernel[k]))
		}
	}
	if a.store != b.store {
		out = append(out, fmt.Sprintf("store changed:\n--- before\n%s\n--- after\n%s", a.store, b.store))
	}
	return strings.Join(out, "\n")
}
