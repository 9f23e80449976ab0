//go:build integration

package integration

// Helpers shared by the integration tests: running docker, the plugin process,
// networks and containers that clean themselves up, host routes and subnets.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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
	done chan struct{} // closed when cmd has been waited for
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
	// Own process group (a Ctrl-C on go test does not hit it directly; TestMain
	// stops it by pid) and dies with the test binary if that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := startOnSteadyThread(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Bin, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "===== harness: %s (pid %d) exited: %v =====\n", p.Name, cmd.Process.Pid, err)
		logf.Close()
		close(done)
	}()
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
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", p.SocketPath())
			},
		},
	}
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

// ---------------------------------------------------------------- networks and containers

// netCreate creates network name (`docker network create ARGS... NAME`), fails the
// test on error and registers its removal (containers attached to it first).
func netCreate(t *testing.T, name string, args ...string) NetworkInfo {
	t.Helper()
	if !strings.HasPrefix(name, namePrefix) {
		t.Fatalf("network name %q must start with %q", name, namePrefix)
	}
	t.Cleanup(func() { netRemove(t, name) })
	mustDocker(t, append(append([]string{"network", "create"}, args...), name)...)
	return netInspect(t, name)
}

// netRemove removes a network if it still exists, after its containers.
// Failures are reported: a network that cannot be deleted is a bug.
func netRemove(t *testing.T, name string) {
	t.Helper()
	out, err := dockerCmd("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", name)
	if err != nil {
		return // already gone
	}
	for _, c := range strings.Fields(out) {
		_, _ = docker(t, "rm", "-f", c)
	}
	if out, err := docker(t, "network", "rm", name); err != nil {
		report := t.Errorf
		if t.Failed() {
			report = t.Logf
		}
		report("cleanup: docker network rm %s: %v\n%s", name, err, out)
	}
}

// runContainer starts a detached busybox `sleep 3600` named name with the given
// `docker run` options, fails the test on error and registers its removal.
func runContainer(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := tryRunContainer(t, name, args...)
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", name, err, out)
	}
	return out
}

// tryRunContainer is runContainer that returns the error (and docker's output)
// instead of failing; the container is removed at cleanup either way.
func tryRunContainer(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	if !strings.HasPrefix(name, namePrefix) {
		t.Fatalf("container name %q must start with %q", name, namePrefix)
	}
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", name) })
	cmd := []string{"run", "-d", "--name", name}
	cmd = append(cmd, args...)
	cmd = append(cmd, testImage, "sleep", "3600")
	out, err := docker(t, cmd...)
	return strings.TrimSpace(out), err
}

// NetworkInfo is the part of `docker network inspect` the tests read.
type NetworkInfo struct {
	Name       string
	ID         string `json:"Id"`
	Driver     string
	EnableIPv6 bool
	IPAM       struct {
		Driver  string
		Options map[string]string
		Config  []struct {
			Subnet     string
			IPRange    string
			Gateway    string
			AuxAddress map[string]string `json:"AuxiliaryAddresses"`
		}
	}
	Containers map[string]struct {
		Name        string
		EndpointID  string
		IPv4Address string
		IPv6Address string
	}
	Options map[string]string
}

// Subnets returns the network's subnets as prefixes.
func (n NetworkInfo) Subnets() []netip.Prefix {
	var ps []netip.Prefix
	for _, c := range n.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// BridgeName is the Linux bridge Docker's bridge driver uses for this network.
func (n NetworkInfo) BridgeName() string {
	if b := n.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	if len(n.ID) < 12 {
		return ""
	}
	return "br-" + n.ID[:12]
}

func netInspect(t testing.TB, name string) NetworkInfo {
	t.Helper()
	out := mustDocker(t, "network", "inspect", name)
	var nets []NetworkInfo
	if err := json.Unmarshal([]byte(out), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("docker network inspect %s: cannot parse (%v): %s", name, err, out)
	}
	return nets[0]
}

// allNetworks inspects every Docker network.
func allNetworks() ([]NetworkInfo, error) {
	out, err := dockerCmd("network", "ls", "-q")
	if err != nil {
		return nil, fmt.Errorf("docker network ls: %v: %s", err, out)
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	var nets []NetworkInfo
	out, err = dockerCmd(append([]string{"network", "inspect"}, ids...)...)
	if err == nil {
		if err := json.Unmarshal([]byte(out), &nets); err != nil {
			return nil, fmt.Errorf("parse docker network inspect: %w", err)
		}
		return nets, nil
	}
	// A network removed between `ls` and `inspect` (another test's cleanup)
	// fails the batch: inspect one by one, skipping the ones that went away.
	nets = nil
	for _, id := range ids {
		out, err := dockerCmd("network", "inspect", id)
		if err != nil {
			if strings.Contains(out, "No such network") {
				continue
			}
			return nil, fmt.Errorf("docker network inspect %s: %v: %s", id, err, out)
		}
		var one []NetworkInfo
		if err := json.Unmarshal([]byte(out), &one); err != nil {
			return nil, fmt.Errorf("parse docker network inspect: %w", err)
		}
		nets = append(nets, one...)
	}
	return nets, nil
}

// EndpointInfo is one entry of a container's NetworkSettings.Networks.
type EndpointInfo struct {
	NetworkID           string
	EndpointID          string
	IPAddress           string
	IPPrefixLen         int
	Gateway             string
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	IPv6Gateway         string
	MacAddress          string
}

// containerNet returns the container's settings on network netName.
func containerNet(t testing.TB, ctr, netName string) EndpointInfo {
	t.Helper()
	out := mustDocker(t, "inspect", "--type", "container", ctr)
	var cs []struct {
		NetworkSettings struct{ Networks map[string]EndpointInfo }
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("docker inspect %s: cannot parse (%v): %s", ctr, err, out)
	}
	ep, ok := cs[0].NetworkSettings.Networks[netName]
	if !ok {
		t.Fatalf("container %s is not attached to network %s", ctr, netName)
	}
	return ep
}

// containerIP returns the container's IPv4 address on network netName.
func containerIP(t testing.TB, ctr, netName string) netip.Addr {
	t.Helper()
	ep := containerNet(t, ctr, netName)
	a, err := netip.ParseAddr(ep.IPAddress)
	if err != nil {
		t.Fatalf("container %s on %s: IPv4 address %q: %v", ctr, netName, ep.IPAddress, err)
	}
	return a
}

// ping runs ping (ping6 for IPv6) inside container from, retrying for a few
// seconds (a fresh interface may still be doing DAD or ARP).
func ping(t testing.TB, from string, to netip.Addr) error {
	t.Helper()
	tool := "ping"
	if to.Is6() {
		tool = "ping6"
	}
	var out string
	var err error
	for i := 0; i < 5; i++ {
		out, err = dockerCmd("exec", from, tool, "-c", "1", "-W", "2", to.String())
		if err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("%s %s from %s: %v\n%s", tool, to, from, err, strings.TrimSpace(out))
}

// ---------------------------------------------------------------- host routes and addresses

// Route is one kernel route (any table).
type Route struct {
	Dst   netip.Prefix
	Type  string // "unicast", "local", "broadcast", ...
	Dev   string
	Table string
}

func (r Route) String() string {
	return fmt.Sprintf("%s %s dev %s table %s", r.Type, r.Dst, r.Dev, r.Table)
}

// hostRoutes lists IPv4 and IPv6 routes of all tables except default routes,
// from `ip -j route show table all` (or the text form if JSON is unavailable).
func hostRoutes() ([]Route, error) {
	var routes []Route
	for _, fam := range []string{"-4", "-6"} {
		rs, err := hostRoutesJSON(fam)
		if err != nil {
			rs, err = hostRoutesText(fam)
		}
		if err != nil {
			return nil, err
		}
		routes = append(routes, rs...)
	}
	return routes, nil
}

func parseRouteDst(s string) (netip.Prefix, bool) {
	if s == "" || s == "default" {
		return netip.Prefix{}, false
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

func hostRoutesJSON(fam string) ([]Route, error) {
	out, err := exec.Command("ip", "-j", fam, "route", "show", "table", "all").Output()
	if err != nil {
		return nil, err
	}
	var raw []struct{ Dst, Type, Dev, Table string }
	if err := json.Unmarshal(bytes.TrimSpace(out), &raw); err != nil {
		return nil, err
	}
	var rs []Route
	for _, r := range raw {
		p, ok := parseRouteDst(r.Dst)
		if !ok {
			continue
		}
		if r.Type == "" {
			r.Type = "unicast"
		}
		if r.Table == "" {
			r.Table = "main"
		}
		rs = append(rs, Route{Dst: p, Type: r.Type, Dev: r.Dev, Table: r.Table})
	}
	return rs, nil
}

var routeTypes = map[string]bool{"unicast": true, "local": true, "broadcast": true, "multicast": true,
	"anycast": true, "unreachable": true, "blackhole": true, "prohibit": true, "throw": true, "nat": true}

func hostRoutesText(fam string) ([]Route, error) {
	out, err := exec.Command("ip", fam, "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip %s route show table all: %w", fam, err)
	}
	var rs []Route
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		r := Route{Type: "unicast", Table: "main"}
		if routeTypes[f[0]] {
			r.Type, f = f[0], f[1:]
		}
		if len(f) == 0 {
			continue
		}
		p, ok := parseRouteDst(f[0])
		if !ok {
			continue
		}
		r.Dst = p
		for i := 1; i+1 < len(f); i++ {
			switch f[i] {
			case "dev":
				r.Dev = f[i+1]
			case "table":
				r.Table = f[i+1]
			}
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// linkAddrs returns the addresses (with prefix length) configured on a host link.
func linkAddrs(dev string) ([]netip.Prefix, error) {
	out, err := exec.Command("ip", "-j", "addr", "show", "dev", dev).Output()
	if err != nil {
		return nil, fmt.Errorf("ip addr show dev %s: %w", dev, err)
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				ps = append(ps, netip.PrefixFrom(ip, a.PrefixLen))
			}
		}
	}
	return ps, nil
}

// ---------------------------------------------------------------- address arithmetic

// nthAddr returns the n-th address of prefix p (0 = network address).
func nthAddr(p netip.Prefix, n uint64) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		s := uint64(b[i]) + carry&0xff
		b[i] = byte(s)
		carry = carry>>8 + s>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// nextPrefix returns the prefix of the same length right after p.
func nextPrefix(p netip.Prefix) netip.Prefix {
	b := p.Masked().Addr().AsSlice()
	bit := p.Bits() - 1 // last bit of the network part
	for i := bit / 8; i >= 0; i-- {
		var inc byte = 1
		if i == bit/8 {
			inc = 1 << (7 - bit%8)
		}
		s := uint16(b[i]) + uint16(inc)
		b[i] = byte(s)
		if s <= 0xff {
			break
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, p.Bits())
}

// freeSubnet returns want, or the first of the next 255 prefixes of the same
// size, that overlaps no host route (default routes excepted) and no subnet of
// an existing Docker network.
func freeSubnet(t testing.TB, want string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(want)
	if err != nil {
		t.Fatalf("freeSubnet(%q): %v", want, err)
	}
	p = p.Masked()
	routes, err := hostRoutes()
	if err != nil {
		t.Fatalf("host routes: %v", err)
	}
	nets, err := allNetworks()
	if err != nil {
		t.Fatal(err)
	}
	var used []netip.Prefix
	for _, r := range routes {
		used = append(used, r.Dst)
	}
	for _, n := range nets {
		used = append(used, n.Subnets()...)
	}
next:
	for i := 0; i < 256; i, p = i+1, nextPrefix(p) {
		for _, u := range used {
			if u.Overlaps(p) {
				continue next
			}
		}
		if i > 0 {
			t.Logf("subnet %s is in use on this host; using %s", want, p)
		}
		return p
	}
	t.Fatalf("no free subnet near %s", want)
	return netip.Prefix{}
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

func startOnSteadyThread(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	steadyStarts <- func() { errc <- cmd.Start() }
	return <-errc
}
