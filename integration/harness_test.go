//go:build integration

package integration

// The harness every test shares: the docker client, the plugin process the
// suite serves, retries, and removing what the suite created. Networks and
// containers are in containers_test.go, the host's network and namespaces in
// netns_test.go, our firewall rules in firewall_test.go, the leftover checks
// in leftovers_test.go, dockerd itself in dockerd_test.go.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// namePrefix starts the name of every container and network the tests create;
	// TestMain removes whatever carries it, before and after the run.
	namePrefix = "mit-"
	// testImage is built by integration/setup.sh from busybox-static.
	testImage = "mynet-busybox:latest"
	// dockerTimeout bounds one docker CLI call, so a wedged plugin fails the test
	// instead of hanging the suite.
	dockerTimeout = 2 * time.Minute
)

// dockerBin is the docker client: Debian's (same version as the engine) when present.
var dockerBin = func() string {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	return "docker"
}()

// dockerCmd runs the docker client and returns its combined output.
func dockerCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerBin, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("docker %s: timed out after %s: %w", strings.Join(args, " "), dockerTimeout, err)
	}
	return string(out), err
}

// docker runs the docker client, logs the call and returns its combined output.
func docker(t testing.TB, args ...string) (string, error) {
	t.Helper()
	start := time.Now()
	out, err := dockerCmd(args...)
	if err != nil {
		t.Logf("docker %s (%s): %v\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(out))
	} else {
		t.Logf("docker %s (%s)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	}
	return out, err
}

// mustDocker is docker that fails the test on error; it returns trimmed output.
func mustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := docker(t, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// ---------------------------------------------------------------- plugin process

// Plugin is one mynet process serving /run/docker/plugins/<Name>.sock.
type Plugin struct {
	Name    string // plugin (socket) name
	Bin     string // path to the mynet binary
	State   string // bbolt state file
	LogPath string // stdout+stderr, appended across restarts
	Args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{} // closed when cmd has been waited for
}

// SocketPath is where Docker finds a legacy plugin called p.Name.
func (p *Plugin) SocketPath() string { return "/run/docker/plugins/" + p.Name + ".sock" }

// Pid returns the pid of the running process, or 0.
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Running reports whether the process started by Start is still alive.
func (p *Plugin) Running() bool { return p.Pid() != 0 }

// Start launches the plugin and waits until its socket answers /Plugin.Activate.
func (p *Plugin) Start() error {
	p.mu.Lock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			p.mu.Unlock()
			return fmt.Errorf("plugin %s already running (pid %d)", p.Name, p.cmd.Process.Pid)
		}
	}
	p.mu.Unlock()

	// Something else answering on our socket would make every test lie.
	if c, err := net.DialTimeout("unix", p.SocketPath(), time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s is already served by another process; stop it first (is a previous test run still alive?)", p.SocketPath())
	}

	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open plugin log: %w", err)
	}
	fmt.Fprintf(logf, "\n===== harness: starting %s at %s =====\n", p.Name, time.Now().Format(time.RFC3339Nano))
	args := append([]string{"--name", p.Name, "--state", p.State, "--log-level", "debug"}, p.Args...)
	cmd := exec.Command(p.Bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	done, err := startChild(cmd, func(err error) {
		fmt.Fprintf(logf, "===== harness: %s (pid %d) exited: %v =====\n", p.Name, cmd.Process.Pid, err)
		logf.Close()
	})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Bin, err)
	}
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("plugin exited before serving %s: %v\n%s", p.SocketPath(), cmd.ProcessState, p.LogTail(40))
		default:
		}
		if lastErr = p.activate(); lastErr == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = p.Kill()
	return fmt.Errorf("plugin did not serve %s within 30s: %v\n%s", p.SocketPath(), lastErr, p.LogTail(40))
}

// activate performs Docker's handshake on the socket and checks both APIs are offered.
func (p *Plugin) activate() error {
	client := unixHTTPClient(p.SocketPath(), 2*time.Second)
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "http://plugin/Plugin.Activate", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.docker.plugins.v1.2+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Plugin.Activate: HTTP %d: %s", resp.StatusCode, body)
	}
	var m struct{ Implements []string }
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("Plugin.Activate: bad JSON %q: %w", body, err)
	}
	has := map[string]bool{}
	for _, s := range m.Implements {
		has[s] = true
	}
	if !has["NetworkDriver"] || !has["IpamDriver"] {
		return fmt.Errorf("Plugin.Activate: Implements = %v, want NetworkDriver and IpamDriver", m.Implements)
	}
	return nil
}

// mustRun runs a host command, fails the test unless it succeeds and
// returns its output.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// addLink runs `ip link add name args...` and deletes the link when the test
// ends (with a veth, both ends go).
func addLink(t testing.TB, name string, args ...string) {
	t.Helper()
	mustRun(t, "ip", append([]string{"link", "add", name}, args...)...)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
}

// unixHTTPClient talks HTTP over the unix socket sock.
func unixHTTPClient(sock string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// signalAndWait sends sig and waits up to d for the process to exit.
func (p *Plugin) signalAndWait(sig syscall.Signal, d time.Duration) (exited bool, err error) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true, nil
	}
	select {
	case <-done:
		return true, nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false, fmt.Errorf("signal %v to pid %d: %w", sig, cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return true, nil
	case <-time.After(d):
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to 10 s, then SIGKILLs.
func (p *Plugin) Stop() error {
	exited, err := p.signalAndWait(syscall.SIGTERM, 10*time.Second)
	if err != nil {
		return err
	}
	if exited {
		return nil
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("plugin %s ignored SIGTERM for 10s and was killed", p.Name)
}

// Kill sends SIGKILL (a crash: no cleanup in the plugin) and waits for the exit.
func (p *Plugin) Kill() error {
	exited, err := p.signalAndWait(syscall.SIGKILL, 10*time.Second)
	if err != nil {
		return err
	}
	if !exited {
		return fmt.Errorf("plugin %s (pid %d) still alive 10s after SIGKILL", p.Name, p.Pid())
	}
	return nil
}

// Restart stops (SIGTERM) and starts the plugin on the same state.
func (p *Plugin) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start()
}

// LogSize is the current size of the log, to be passed to LogSince.
func (p *Plugin) LogSize() int64 {
	fi, err := os.Stat(p.LogPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogTail returns the last n lines of the plugin log.
func (p *Plugin) LogTail(n int) string { return p.LogSince(0, n) }

// LogSince returns at most the last n lines written after byte offset off.
func (p *Plugin) LogSince(off int64, n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no plugin log: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Sprintf("(seek plugin log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// withPlugin is called first by every test: it makes sure the shared plugin runs
// (a previous test may have killed it) and prints the plugin's log lines written
// during the test if the test fails.
func withPlugin(t *testing.T) *Plugin {
	t.Helper()
	if !plugin.Running() {
		t.Logf("plugin %s not running; starting it", plugin.Name)
		if err := plugin.Start(); err != nil {
			t.Fatalf("start plugin: %v", err)
		}
	}
	off := plugin.LogSize()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin log during %s (last 150 lines, %s):\n%s", t.Name(), plugin.LogPath, plugin.LogSince(off, 150))
		}
	})
	return plugin
}

// removePrefixed removes every container, then every network, whose name starts
// with namePrefix. Used before and after the suite.
func removePrefixed(w io.Writer) {
	out, err := dockerCmd("ps", "-a", "--filter", "name="+namePrefix, "--format", "{{.Names}}")
	if err != nil {
		fmt.Fprintf(w, "cleanup: docker ps: %v: %s\n", err, out)
	}
	var ctrs []string
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, namePrefix) {
			ctrs = append(ctrs, n)
		}
	}
	if len(ctrs) > 0 {
		fmt.Fprintf(w, "cleanup: removing containers %v\n", ctrs)
		if out, err := dockerCmd(append([]string{"rm", "-f"}, ctrs...)...); err != nil {
			fmt.Fprintf(w, "cleanup: docker rm -f: %v: %s\n", err, out)
		}
	}
	out, err = dockerCmd("network", "ls", "--format", "{{.Name}}")
	if err != nil {
		fmt.Fprintf(w, "cleanup: docker network ls: %v: %s\n", err, out)
	}
	for _, n := range strings.Fields(out) {
		if !strings.HasPrefix(n, namePrefix) {
			continue
		}
		fmt.Fprintf(w, "cleanup: removing network %s\n", n)
		if out, err := dockerCmd("network", "rm", n); err != nil {
			fmt.Fprintf(w, "cleanup: docker network rm %s: %v: %s\n", n, err, out)
		}
	}
}

// Pdeathsig fires when the OS thread that started the child exits, not the
// process. Tests lock goroutines to threads to enter network namespaces, and
// Go destroys such a thread when its goroutine ends; a child started from it
// would get SIGTERM mid-suite. So children with Pdeathsig are started from one
// thread that lives as long as the test binary.
var steadyStarts = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: this thread stays for the whole run
		for fn := range ch {
			fn()
		}
	}()
	return ch
}()

// startChild starts cmd in a process group of its own (a Ctrl-C on go test
// does not hit it directly; the tests stop it by pid), dying with the test
// binary if that is killed. The channel closes once cmd has exited and
// onExit has run with Wait's error.
func startChild(cmd *exec.Cmd, onExit func(error)) (<-chan struct{}, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	errc := make(chan error, 1)
	steadyStarts <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		onExit(cmd.Wait())
		close(done)
	}()
	return done, nil
}

// stopChild sends SIGTERM to a child from startChild and waits for its
// exit, SIGKILL after 10 s.
func stopChild(cmd *exec.Cmd, done <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// eventually retries fn every 500 ms until it succeeds or d has passed.
func eventually(d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ensurePlugin restarts the shared plugin if a test left it stopped.
func ensurePlugin(t *testing.T) {
	if plugin.Running() {
		return
	}
	t.Logf("plugin not running after the test; starting it again")
	if err := plugin.Start(); err != nil {
		t.Errorf("restart plugin after the test: %v", err)
	}
}
