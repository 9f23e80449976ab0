package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeDockerAPI stands in for dockerd's API socket: a unix socket that, while
// hanging, takes every request and never answers, and otherwise answers
// GET /networks with the given network list (ids only, no detail).
type fakeDockerAPI struct {
	sock  string
	asked chan string // each request's path as it arrives
	mu    sync.Mutex
	hang  bool
	list  string
	done  chan struct{}
}

func newFakeDockerAPI(t *testing.T, dir string) *fakeDockerAPI {
	t.Helper()
	f := &fakeDockerAPI{sock: filepath.Join(dir, "docker.sock"), asked: make(chan string, 100), hang: true, list: "[]", done: make(chan struct{})}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case f.asked <- r.URL.Path:
		default:
		}
		f.mu.Lock()
		hang, list := f.hang, f.list
		f.mu.Unlock()
		if hang {
			select {
			case <-r.Context().Done():
			case <-f.done:
			}
			return
		}
		io.WriteString(w, list)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(f.done)
		srv.Close()
	})
	return f
}

func (f *fakeDockerAPI) answer(list string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang, f.list = false, list
}

func (d *daemon) post(t *testing.T, c *http.Client, path, body string) {
	t.Helper()
	r, err := c.Post("http://p"+path, "", strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", path, r.Status, b)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not within %s", what, d)
}

// The real daemon with its background reconcile pointed at a Docker API
// that takes requests and never answers (a dockerd hung or restarting):
// protocol calls are answered while the reconcile waits, the run ends as
// docker_unreachable after its call's timeout without repairing anything,
// and SIGTERM stops the daemon in the middle of such a call.
func TestDaemonReconcileNeverWaitsOnAHungDocker(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	fake := newFakeDockerAPI(t, dir)
	msock := filepath.Join(dir, "metrics.sock")
	d := startDaemon(t, bin, dir, "--docker-host", "unix://"+fake.sock, "--reconcile-every", "1s", "--reconcile-grace", "0s", "--metrics", "unix:"+msock)
	c := d.waitServing(t)
	c.Timeout = 30 * time.Second // far beyond any call; a call waiting on Docker would hit it
	select {
	case <-fake.asked:
	case <-time.After(30 * time.Second):
		t.Fatalf("the reconcile never asked Docker:\n%s", d.out)
	}
	// The reconcile is inside its Docker call now.
	const netID = "0123456789abcdef0123"
	d.post(t, c, "/IpamDriver.RequestPool", `{"Pool":"10.78.0.0/24"}`)
	d.post(t, c, "/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.78.0.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}}`)
	d.post(t, c, "/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.generic":{}},`+
		`"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.78.0.0/24","Gateway":"10.78.0.1/24"}]}`)
	d.post(t, c, "/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"fedcba9876543210","Interface":{"Address":"10.78.0.2/24"},"Options":{}}`)
	d.post(t, c, "/NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"fedcba9876543210"}`)

	waitFor(t, "a reconcile run ended as docker_unreachable", 30*time.Second, func() bool {
		return strings.Contains(d.out.String(), "reconcile: no view from Docker")
	})
	mc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", msock)
	}}}
	r, err := mc.Get("http://m/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(body), `mynet_reconcile_runs_total{outcome="docker_unreachable"} `) ||
		strings.Contains(string(body), `mynet_reconcile_runs_total{outcome="docker_unreachable"} 0`) {
		t.Errorf("no docker_unreachable run counted:\n%s", grepLines(string(body), "mynet_reconcile"))
	}
	if strings.Contains(d.out.String(), "repaired: ") {
		t.Errorf("repaired something without Docker's view:\n%s", d.out)
	}

	// Stop it while its next Docker call hangs.
	for len(fake.asked) > 0 {
		<-fake.asked
	}
	select {
	case <-fake.asked:
	case <-time.After(30 * time.Second):
		t.Fatalf("no second reconcile run:\n%s", d.out)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, d.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("SIGTERM did not stop the daemon while its reconcile waited on Docker:\n%s", d.out)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// `mynet doctor --fix` pointed at a Docker that has none of the store's
// networks (another engine) is refused with exit 5 and changes nothing;
// --force overrides it.
func TestDoctorFixRefusesADisjointView(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	fake := newFakeDockerAPI(t, dir)
	fake.answer("[]")
	d := startDaemon(t, bin, dir, "--reconcile-every", "0")
	c := d.waitServing(t)
	const netID = "0123456789abcdef0123"
	d.post(t, c, "/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.generic":{}},`+
		`"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.79.0.0/24","Gateway":"10.79.0.1/24"}]}`)
	state := filepath.Join(dir, "state.db")
	doctor := func(args ...string) (string, int) {
		out, err := exec.Command(bin, append([]string{"doctor", "--state", state, "--docker-host", "unix://" + fake.sock, "--grace", "0s"}, args...)...).CombinedOutput()
		return string(out), exitCode(err)
	}
	networks := func() int {
		out, err := exec.Command(bin, "networks", "--json", "--state", state).Output()
		if err != nil {
			t.Fatalf("mynet networks: %v", err)
		}
		var ns []json.RawMessage
		json.Unmarshal(out, &ns)
		return len(ns)
	}
	out, code := doctor("--fix")
	if code != 5 || !strings.Contains(out, "shares no network with the store") || !strings.Contains(out, "--force") {
		t.Fatalf("doctor --fix against a disjoint view: exit %d\n%s", code, out)
	}
	if n := networks(); n != 1 {
		t.Fatalf("%d networks after a refused --fix, want 1", n)
	}
	if out, code := doctor(); code != 4 || !strings.Contains(out, "network_unknown_to_docker") {
		t.Errorf("doctor without --fix: exit %d, want 4 and the report\n%s", code, out)
	}
	if out, code := doctor("--fix", "--force"); code != 0 {
		t.Errorf("doctor --fix --force: exit %d\n%s", code, out)
	}
	if n := networks(); n != 0 {
		t.Errorf("%d networks after --fix --force, want 0", n)
	}
}

// The reconcile's flags and their environment twins; bad values stop the
// start naming the flag and what is valid.
func TestReconcileFlags(t *testing.T) {
	for _, k := range []string{"MYNET_RECONCILE_EVERY", "MYNET_RECONCILE_GRACE", "DOCKER_HOST"} {
		t.Setenv(k, "") // unset, for envOr
	}
	c, err := parseFlags(nil)
	if err != nil || c.reconcileEvery != 5*time.Minute || c.reconcileGrace != 2*time.Minute || c.dockerSocket != "/var/run/docker.sock" {
		t.Fatalf("defaults: every %s grace %s docker %q %v", c.reconcileEvery, c.reconcileGrace, c.dockerSocket, err)
	}
	t.Setenv("MYNET_RECONCILE_EVERY", "30s")
	t.Setenv("MYNET_RECONCILE_GRACE", "10s")
	t.Setenv("DOCKER_HOST", "unix:///run/other.sock")
	c, err = parseFlags(nil)
	if err != nil || c.reconcileEvery != 30*time.Second || c.reconcileGrace != 10*time.Second || c.dockerSocket != "/run/other.sock" {
		t.Fatalf("from the environment: every %s grace %s docker %q %v", c.reconcileEvery, c.reconcileGrace, c.dockerSocket, err)
	}
	c, err = parseFlags([]string{"--reconcile-every", "0", "--docker-host", "tcp://10.0.0.1:2375"})
	if err != nil || c.reconcileEvery != 0 {
		t.Fatalf("--reconcile-every 0 with a docker host it would not use: %+v %v", c, err)
	}
	for _, bad := range []struct{ args []string }{
		{[]string{"--reconcile-every", "-1s"}},
		{[]string{"--reconcile-every", "100ms"}},
		{[]string{"--reconcile-every", "five"}},
		{[]string{"--reconcile-every", "48h"}},
		{[]string{"--reconcile-grace", "-1m"}},
		{[]string{"--docker-host", "tcp://10.0.0.1:2375"}},
		{[]string{"--docker-host", "unix://relative.sock"}},
	} {
		_, err := parseFlags(bad.args)
		if err == nil || !strings.Contains(err.Error(), bad.args[0]) || !strings.Contains(err.Error(), "give ") {
			t.Errorf("%v: %v, want an error naming %s and what is valid", bad.args, err, bad.args[0])
		}
	}
	// The binary says so and exits 2.
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--reconcile-every", "-5m").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "--reconcile-every") {
		t.Errorf("bad --reconcile-every: exit %d\n%s", code, out)
	}
}
