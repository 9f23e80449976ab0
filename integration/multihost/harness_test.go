//go:build integration

// Package multihost tests mynet across several hosts on one machine: each
// simulated host is a network namespace plus a private mount namespace
// running its own dockerd (integration/engine) and its own mynet with
// --cluster, and the hosts are joined by veths to an underlay bridge. A real
// etcd (Debian's etcd-server, integration/setup.sh installs it) listens on
// the underlay only, over TLS with client certificates required, and each
// mynet reaches it with --cluster-ca, --cluster-cert and --cluster-key, as a
// production cluster would.
//
// Layout (names start with mit-mh so a crashed run's leftovers are found):
//
//	netns mit-mhul   bridge ul0, holding r (to the root namespace) and h1..h3
//	root namespace   mit-mhr 10.199.0.254/24: etcd listens there
//	netns mit-mhN    eth1 10.199.0.1N/24 (the underlay), dockerd, mynet
//
// The bridge lives in a namespace of its own, so the root namespace's
// FORWARD chain (policy DROP under dockerd, and br_netfilter hands bridged
// frames to it) never sees the underlay's traffic.
//
//	go test -race -count=1 -tags integration -v ./integration/multihost/
//
// MYNET_MH_KEEP=1 keeps the folder (mynet and dockerd logs) after the run.
package multihost

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/cluster/etcdtest"
	"github.com/mynet/mynet/integration/engine"
)

const (
	hostCount  = 3
	underlayNS = "mit-mhul"
	rootLink   = "mit-mhr"
	rootAddr   = "10.199.0.254"
	image      = "mynet-busybox:latest"
	workDir    = "/tmp/mynet-multihost"
	// cmdTimeout bounds one docker or mynet CLI call: a wedged daemon fails
	// the test instead of hanging the suite.
	cmdTimeout = 2 * time.Minute
)

// host is one simulated host.
type host struct {
	N      int
	Name   string // its network namespace, mit-mhN
	Addr   string // underlay address, the advertise address mynet finds itself
	Dir    string
	Eng    *engine.Engine
	mu     sync.Mutex
	mynet  *exec.Cmd
	exited chan struct{} // closed when that mynet has exited
}

// lab is the whole set-up, shared by the tests.
type lab struct {
	dir   string
	bin   string
	etcd  *etcdtest.Server
	hosts []*host
}

var L *lab

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "multihost: must run as root; run `make test` (integration/setup.sh prepares the machine)")
		return 1
	}
	l, err := setUp()
	if err != nil {
		fmt.Fprintf(os.Stderr, "multihost: set-up: %v\n", err)
		if l != nil {
			l.tearDown()
		}
		return 1
	}
	L = l
	// Ctrl-C or a kill still takes everything down.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "multihost: got %v, tearing down\n", s)
		l.tearDown()
		os.Exit(1)
	}()
	code := m.Run()
	if code != 0 {
		for _, h := range l.hosts {
			fmt.Fprintf(os.Stderr, "multihost: %s mynet log tail:\n%s\n", h.Name, engine.Tail(h.mynetLog(), 40))
		}
	}
	l.tearDown()
	return code
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeLeftovers deletes what an earlier run that died left: its engines
// (by their saved state), namespaces and the root link, all by our names.
func removeLeftovers() {
	for n := 1; n <= hostCount; n++ {
		if e, err := engine.Attach(filepath.Join(workDir, fmt.Sprintf("h%d", n), "engine")); err == nil {
			e.Stop()
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "mit-mh") {
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	exec.Command("ip", "link", "del", rootLink).Run()
	// An etcd of ours: its data lies in our folder.
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil &&
				strings.Contains(string(b), "--data-dir\x00"+filepath.Join(workDir, "etcd")) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	os.RemoveAll(workDir)
}

func setUp() (*lab, error) {
	removeLeftovers()
	l := &lab{dir: workDir}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, err
	}
	l.bin = filepath.Join(l.dir, "mynet")
	if err := build(l.bin); err != nil {
		return l, err
	}
	// The underlay: a bridge in a namespace of its own, the root namespace
	// on it through one veth (etcd's address).
	for _, args := range [][]string{
		{"ip", "netns", "add", underlayNS},
		{"ip", "-n", underlayNS, "link", "add", "ul0", "type", "bridge"},
		{"ip", "-n", underlayNS, "link", "set", "ul0", "up"},
		{"ip", "link", "add", rootLink, "type", "veth", "peer", "name", "r", "netns", underlayNS},
		{"ip", "-n", underlayNS, "link", "set", "r", "master", "ul0", "up"},
		{"ip", "addr", "add", rootAddr + "/24", "dev", rootLink},
		{"ip", "link", "set", rootLink, "up"},
	} {
		if err := sh(args...); err != nil {
			return l, err
		}
	}
	var err error
	if l.etcd, err = etcdtest.New(etcdtest.Options{Addr: netip.MustParseAddr(rootAddr), Dir: filepath.Join(l.dir, "etcd"), TLS: true}); err != nil {
		return l, err
	}
	for n := 1; n <= hostCount; n++ {
		h := &host{N: n, Name: fmt.Sprintf("mit-mh%d", n), Addr: fmt.Sprintf("10.199.0.1%d", n), Dir: filepath.Join(l.dir, fmt.Sprintf("h%d", n))}
		l.hosts = append(l.hosts, h)
		if err := os.MkdirAll(h.Dir, 0o755); err != nil {
			return l, err
		}
		for _, args := range [][]string{
			{"ip", "netns", "add", h.Name},
			{"ip", "-n", underlayNS, "link", "add", fmt.Sprintf("h%d", n), "type", "veth", "peer", "name", "eth1", "netns", h.Name},
			{"ip", "-n", underlayNS, "link", "set", fmt.Sprintf("h%d", n), "master", "ul0", "up"},
			{"ip", "-n", h.Name, "addr", "add", h.Addr + "/24", "dev", "eth1"},
			{"ip", "-n", h.Name, "link", "set", "eth1", "up"},
			{"ip", "-n", h.Name, "link", "set", "lo", "up"},
		} {
			if err := sh(args...); err != nil {
				return l, err
			}
		}
	}
	// Engines start in parallel: each takes seconds.
	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.Eng, errs[i] = engine.Start(engine.Config{Name: h.Name, NetNS: "/run/netns/" + h.Name, Dir: filepath.Join(h.Dir, "engine"), Keep: true})
			if errs[i] == nil {
				errs[i] = h.Eng.ImportBusybox(image)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return l, err
		}
	}
	for _, h := range l.hosts {
		if err := h.startMynet(l); err != nil {
			return l, err
		}
	}
	return l, nil
}

func build(bin string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	args := []string{"build", "-o", bin}
	if os.Getenv("MYNET_IT_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

func (l *lab) tearDown() {
	var wg sync.WaitGroup
	for _, h := range l.hosts {
		h.stopMynet(syscall.SIGTERM)
		if h.Eng != nil {
			wg.Add(1)
			go func() { defer wg.Done(); h.Eng.Stop() }()
		}
	}
	wg.Wait()
	if l.etcd != nil {
		l.etcd.Stop()
	}
	for _, h := range l.hosts {
		exec.Command("ip", "netns", "del", h.Name).Run()
	}
	exec.Command("ip", "netns", "del", underlayNS).Run() // takes the root veth's peer, so the pair goes
	exec.Command("ip", "link", "del", rootLink).Run()
	if os.Getenv("MYNET_MH_KEEP") == "1" {
		fmt.Fprintf(os.Stderr, "multihost: keeping %s (MYNET_MH_KEEP=1)\n", l.dir)
		return
	}
	os.RemoveAll(l.dir)
}

func (h *host) mynetLog() string  { return filepath.Join(h.Dir, "mynet.log") }
func (h *host) statePath() string { return filepath.Join(h.Dir, "mynet.db") }

// startMynet starts this host's mynet inside its engine's namespaces and
// waits until it serves.
func (h *host) startMynet(l *lab) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	logf, err := os.OpenFile(h.mynetLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Ready is the "serving" line this start writes: after a SIGKILL the old
	// socket file is still there, and the socket opens before the cluster
	// reconcile is done.
	st, _ := logf.Stat()
	from := st.Size()
	fmt.Fprintf(logf, "\n===== %s: starting mynet at %s =====\n", h.Name, time.Now().Format(time.RFC3339Nano))
	// No --advertise: mynet takes the source address of its route to etcd.
	tlsFiles := l.etcd.TLS()
	cmd := h.Eng.Command(l.bin, "--name", "mynet", "--state", h.statePath(), "--log-level", "debug",
		"--cluster", "etcd://"+l.etcd.HostPort(), "--cluster-sync", "3s",
		"--cluster-ca", tlsFiles.CA, "--cluster-cert", tlsFiles.ClientCert, "--cluster-key", tlsFiles.ClientKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start mynet: %w", h.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	h.mynet, h.exited = cmd, exited
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(h.mynetLog()); err == nil && int64(len(b)) > from && strings.Contains(string(b[from:]), "msg=serving") {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s: mynet exited at start; log:\n%s", h.Name, engine.Tail(h.mynetLog(), 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: mynet did not start serving within 60s; log:\n%s", h.Name, engine.Tail(h.mynetLog(), 30))
}

// stopMynet signals this host's mynet (by its pid) and waits for it.
func (h *host) stopMynet(sig syscall.Signal) {
	h.mu.Lock()
	cmd, exited := h.mynet, h.exited
	h.mynet = nil
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// running says whether this host's mynet was started and not stopped.
func (h *host) running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mynet != nil
}

// run runs a command inside the host's namespaces, bounded in time, and
// returns its combined output.
func (h *host) run(name string, args ...string) (string, error) {
	cmd := h.Eng.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%s %s on %s: %w", name, strings.Join(args, " "), h.Name, err)
		}
		return out.String(), nil
	case <-time.After(cmdTimeout):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s %s on %s: timed out after %s", name, strings.Join(args, " "), h.Name, cmdTimeout)
	}
}

// docker runs the docker client against this host's engine.
func (h *host) docker(t testing.TB, args ...string) (string, error) {
	t.Helper()
	start := time.Now()
	out, err := h.run("docker", args...)
	if err != nil {
		t.Logf("%s: docker %s (%s): %v\n%s", h.Name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(out))
	} else {
		t.Logf("%s: docker %s (%s)", h.Name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	}
	return strings.TrimSpace(out), err
}

func (h *host) mustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.docker(t, args...)
	if err != nil {
		t.Fatalf("%s: docker %s: %v\n%s", h.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// network creates a network on this host and removes it when the test ends.
func (h *host) network(t testing.TB, name string, args ...string) {
	t.Helper()
	h.mustDocker(t, append(append([]string{"network", "create", "-d", "mynet"}, args...), name)...)
	t.Cleanup(func() { h.docker(t, "network", "rm", name) })
}

// container starts a sleeping container and returns its address on network.
func (h *host) container(t testing.TB, name, network string, args ...string) string {
	t.Helper()
	h.mustDocker(t, append(append([]string{"run", "-d", "--name", name, "--network", network}, args...), image, "sleep", "3600")...)
	t.Cleanup(func() { h.docker(t, "rm", "-f", name) })
	return h.addr(t, name, network)
}

func (h *host) addr(t testing.TB, name, network string) string {
	t.Helper()
	return h.mustDocker(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
}

// ping sends one ping from a container (payload size bytes); a reply must
// come within 2 s.
func (h *host) ping(t testing.TB, ctr, ip string, size int) error {
	t.Helper()
	_, err := h.docker(t, "exec", ctr, "ping", "-c", "1", "-W", "2", "-s", fmt.Sprint(size), ip)
	return err
}

// expectPing fails the test, and lets it go on, unless a ping from ctr to
// ip gets a reply; what names the check.
func (h *host) expectPing(t testing.TB, what, ctr, ip string) {
	t.Helper()
	if err := h.ping(t, ctr, ip, 56); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// unreachable says whether a ping from ctr to ip gets no reply within 1 s.
func (h *host) unreachable(t testing.TB, ctr, ip string) bool {
	t.Helper()
	_, err := h.docker(t, "exec", ctr, "ping", "-c", "1", "-W", "1", ip)
	return err != nil
}

// pingAll pings every address from one container, in one docker exec.
func (h *host) pingAll(t testing.TB, ctr string, ips []string) error {
	t.Helper()
	script := "for ip in " + strings.Join(ips, " ") + "; do ping -c 1 -W 2 $ip >/dev/null || { echo no reply from $ip; exit 1; }; done"
	out, err := h.docker(t, "exec", ctr, "sh", "-c", script)
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// removeContainers removes containers of this host in one call.
func (h *host) removeContainers(t testing.TB, names ...string) {
	t.Helper()
	if len(names) > 0 {
		h.docker(t, append([]string{"rm", "-f"}, names...)...)
	}
}

// mynetCLI runs a mynet command against this host's daemon.
func (h *host) mynetCLI(args ...string) (string, error) {
	return h.run(L.bin, append(args, "--state", h.statePath())...)
}

// eventually retries fn until it succeeds or d passes.
func eventually(t testing.TB, d time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncWait is how long a change takes to reach every host at most: the
// watch brings it at once, the periodic reconcile (--cluster-sync) catches
// what the watch missed.
func (l *lab) syncWait() time.Duration { return 10 * time.Second }
