package privilege

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemon is the real binary (go build of the module root) under
// `unshare -n [setpriv ...] mynet`: unshare and setpriv exec, so the pid is
// the daemon's and its network namespace is a fresh one.
type daemon struct {
	cmd         *exec.Cmd
	out         *lockedBuffer
	state, sock string
	client      *http.Client
	exited      chan struct{}
}

func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mynet")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mynet/mynet").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// start runs the daemon; setpriv (nil = full root) goes between unshare and
// the binary. It returns once the socket answers or the daemon has exited.
func start(t *testing.T, bin string, setpriv []string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{out: &lockedBuffer{}, state: filepath.Join(dir, "state.db"), sock: filepath.Join(dir, "sock", "priv.sock"), exited: make(chan struct{})}
	args := append([]string{"-n"}, setpriv...)
	args = append(args, bin, "--name", "priv", "--socket-dir", filepath.Join(dir, "sock"), "--state", d.state, "--firewall-check", "1h")
	d.cmd = exec.Command("unshare", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.exited
	})
	d.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.sock)
	}}}
	for i := 0; i < 100; i++ {
		select {
		case <-d.exited:
			return d
		default:
		}
		if r, err := d.client.Post("http://p/Plugin.Activate", "", nil); err == nil {
			r.Body.Close()
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("daemon neither served %s nor exited:\n%s", d.sock, d.out)
	return nil
}

func (d *daemon) running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// post returns "" on success, else the error message the daemon answered.
func (d *daemon) post(t *testing.T, path, body string) string {
	t.Helper()
	r, err := d.client.Post("http://p"+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, d.out)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode == http.StatusOK {
		return ""
	}
	return string(b)
}

// inNetns runs a command in the daemon's network namespace with full root.
func (d *daemon) inNetns(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(d.cmd.Process.Pid), "-n"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

// lockedBuffer collects the daemon's output, written by exec's copier and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
