package blackbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/internal/proctest"
)

// bin is the real mynet command, built once by TestMain for all tests.
var bin string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mynet-blackbox-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "mynet")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mynet/mynet").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "blackbox: go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// mynet runs the binary once (a command, or a daemon that must give up) in
// a network namespace of its own and returns its output and exit code.
func mynet(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return proctest.RunIsolated(t, 20*time.Second, nil, append([]string{bin}, args...)...)
}

// daemonName is the --name of every daemon started here: its socket is
// sock/bb.sock in the daemon's directory.
const daemonName = "bb"

// daemon is the real binary under `unshare -n [wrap...] mynet ...`: unshare
// and whatever wrap runs (env, setpriv) exec, so the pid is the daemon's and
// its network namespace is a fresh one.
type daemon struct {
	wrap  []string // commands run inside the new namespace before the binary (setpriv, env)
	flags []string // more daemon flags

	dir     string // the daemon's temporary directory
	state   string // state file; the admin socket is state + ".sock"
	sock    string // plugin socket
	admin   string
	logPath string // its stdout and stderr

	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	waitErr error         // how it exited, set before exited closes
	client  *http.Client  // over sock
}

// newDaemon lays a daemon out in a fresh temporary directory (state file
// and admin socket under state/, plugin socket under sock/); nothing runs yet.
func newDaemon(t *testing.T) *daemon {
	dir := t.TempDir()
	d := &daemon{
		dir:     dir,
		state:   filepath.Join(dir, "state", daemonName+".db"),
		sock:    filepath.Join(dir, "sock", daemonName+".sock"),
		logPath: filepath.Join(dir, "daemon.log"),
		exited:  make(chan struct{}),
	}
	d.admin = d.state + ".sock"
	d.client = unixClient(d.sock)
	return d
}

// startDaemon starts a daemon as full root with more flags and fails the
// test unless it serves.
func startDaemon(t *testing.T, flags ...string) *daemon {
	t.Helper()
	d := newDaemon(t)
	d.flags = flags
	d.start(t)
	if !d.running() {
		t.Fatalf("daemon exited at start: %v\n%s", d.waitErr, d.log())
	}
	return d
}

// start runs the daemon and returns once its socket answers or it has
// exited; the test's cleanup stops it.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed to run the daemon in its own network namespace")
	}
	if err := os.MkdirAll(filepath.Dir(d.state), 0o700); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-n"}, d.wrap...)
	args = append(args, bin, "--name", daemonName, "--socket-dir", filepath.Dir(d.sock), "--state", d.state,
		"--log-level", "debug",
		"--firewall-check", "1h") // no periodic repair between two looks at the kernel
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the daemon writes to its own copy
	d.cmd = exec.Command("unshare", append(args, d.flags...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop() })
	for i := 0; i < 100; i++ {
		if !d.running() {
			return
		}
		if r, err := d.client.Post("http://p/Plugin.Activate", "", nil); err == nil {
			r.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("daemon neither served %s nor exited:\n%s", d.sock, d.log())
}

func (d *daemon) running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM to the daemon's pid, waits for the exit (SIGKILL after
// 20 s) and returns how it exited.
func (d *daemon) stop() error {
	if d.running() {
		proctest.Stop(d.cmd.Process, d.exited, 20*time.Second)
	}
	<-d.exited
	return d.waitErr
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
		t.Fatalf("POST %s: %v\n%s", path, err, d.log())
	}
	defer r.Body.Close()
	out, _ := io.ReadAll(r.Body)
	return r.StatusCode, out
}

// call returns "" when the daemon answers 200, else its answer.
func (d *daemon) call(t *testing.T, path, body string) string {
	t.Helper()
	status, out := d.post(t, path, []byte(body))
	if status == http.StatusOK {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// inNetns runs a command with full root in the daemon's network namespace.
func (d *daemon) inNetns(t *testing.T, args ...string) string {
	t.Helper()
	full := append([]string{"-t", fmt.Sprint(d.pid()), "-n"}, args...)
	out, err := exec.Command("nsenter", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// tcpListeners lists the hex ports in state LISTEN (0A) in the daemon's
// network namespace, from /proc/PID/net/tcp and tcp6.
func (d *daemon) tcpListeners(t *testing.T) []string {
	t.Helper()
	var ports []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", d.pid(), f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fields := strings.Fields(line); len(fields) > 3 && fields[3] == "0A" {
				ports = append(ports, fields[1][strings.LastIndex(fields[1], ":")+1:])
			}
		}
	}
	return ports
}

// log is what the daemon wrote so far.
func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// Request bodies of the network driver protocol. Ids are short patterns
// repeated to Docker's 64 characters.

func id64(short string) string { return strings.Repeat(short, 64/len(short)) }

// network is CreateNetwork of a bridge network on subnet (a /24 ending in
// .0/24), gateway .1.
func network(id, subnet string) string {
	gw := strings.TrimSuffix(subnet, "0/24") + "1/24"
	return fmt.Sprintf(`{"NetworkID":%q,"Options":{"com.docker.network.generic":{}},"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":%q,"Gateway":%q}]}`, id64(id), subnet, gw)
}

func endpoint(netID, epID, addr string) string {
	return fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q,"Interface":{"Address":%q}}`, id64(netID), id64(epID), addr)
}

// publish is ProgramExternalConnectivity of container port 80/tcp on hostPort.
func publish(netID, epID string, hostPort int) string {
	return fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q,"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":%d}]}}`, id64(netID), id64(epID), hostPort)
}

// unpublish is RevokeExternalConnectivity.
func unpublish(netID, epID string) string {
	return fmt.Sprintf(`{"NetworkID":%q,"EndpointID":%q}`, id64(netID), id64(epID))
}
