package blackbox

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDockerAPI stands in for dockerd's API socket: while hanging it takes
// every request and never answers, otherwise it answers GET /networks with
// the given list (ids only).
type fakeDockerAPI struct {
	sock  string
	asked chan string // each request's path as it arrives
	mu    sync.Mutex
	hang  bool
	list  string
	done  chan struct{}
}

func newFakeDockerAPI(t *testing.T) *fakeDockerAPI {
	t.Helper()
	f := &fakeDockerAPI{sock: filepath.Join(t.TempDir(), "docker.sock"), asked: make(chan string, 100), hang: true, list: "[]", done: make(chan struct{})}
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

// waitAsked waits for the next request to the fake Docker.
func (f *fakeDockerAPI) waitAsked(t *testing.T, d *daemon) {
	t.Helper()
	select {
	case <-f.asked:
	case <-time.After(30 * time.Second):
		t.Fatalf("the reconcile never asked Docker:\n%s", d.log())
	}
}

// The real daemon with its background reconcile pointed at a Docker API
// that takes requests and never answers (a dockerd hung or restarting):
// protocol calls are answered while the reconcile waits, the run ends as
// docker_unreachable after its call's timeout without repairing anything,
// and SIGTERM stops the daemon in the middle of such a call.
func TestDaemonReconcileNeverWaitsOnAHungDocker(t *testing.T) {
	fake := newFakeDockerAPI(t)
	msock := filepath.Join(t.TempDir(), "metrics.sock")
	d := startDaemon(t, "--docker-host", "unix://"+fake.sock, "--reconcile-every", "1s", "--reconcile-grace", "0s", "--metrics", "unix:"+msock)
	fake.waitAsked(t, d)
	// The reconcile is inside its Docker call now. A call waiting on it would
	// fail on the client's timeout.
	for _, call := range []struct{ path, body string }{
		{"/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.78.0.0/24"}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.78.0.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}}`},
		{"/NetworkDriver.CreateNetwork", network("0123456789ab", "10.78.0.0/24")},
		{"/NetworkDriver.CreateEndpoint", endpoint("0123456789ab", "fedcba98", "10.78.0.2/24")},
		{"/NetworkDriver.DeleteEndpoint", `{"NetworkID":"` + id64("0123456789ab") + `","EndpointID":"` + id64("fedcba98") + `"}`},
	} {
		if msg := d.call(t, call.path, call.body); msg != "" {
			t.Fatalf("%s while the reconcile waits on Docker: %s", call.path, msg)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.log(), "reconcile: no view from Docker"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no run ended as docker_unreachable:\n%s", d.log())
		}
	}
	r, err := unixClient(msock).Get("http://m/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(body), `mynet_reconcile_runs_total{outcome="docker_unreachable"} `) ||
		strings.Contains(string(body), `mynet_reconcile_runs_total{outcome="docker_unreachable"} 0`) {
		t.Errorf("no docker_unreachable run counted:\n%s", body)
	}
	if strings.Contains(d.log(), "repaired: ") {
		t.Errorf("repaired something without Docker's view:\n%s", d.log())
	}

	// Stop it while its next Docker call hangs.
	for len(fake.asked) > 0 {
		<-fake.asked
	}
	fake.waitAsked(t, d)
	start := time.Now()
	if err := d.stop(); err != nil { // SIGKILL, and an error, after 20 s
		t.Fatalf("SIGTERM while the reconcile waited on Docker: %v after %s\n%s", err, time.Since(start), d.log())
	}
}

// `mynet doctor --fix` pointed at a Docker that has none of the store's
// networks (another engine) is refused with exit 5 and changes nothing;
// --force overrides it.
func TestDoctorFixRefusesADisjointView(t *testing.T) {
	fake := newFakeDockerAPI(t)
	fake.answer("[]")
	d := startDaemon(t, "--reconcile-every", "0")
	if msg := d.call(t, "/NetworkDriver.CreateNetwork", network("0123456789ab", "10.79.0.0/24")); msg != "" {
		t.Fatal(msg)
	}
	doctor := func(args ...string) (string, int) {
		return mynet(t, append([]string{"doctor", "--state", d.state, "--docker-host", "unix://" + fake.sock, "--grace", "0s"}, args...)...)
	}
	networks := func() int {
		out, code := mynet(t, "networks", "--json", "--state", d.state)
		var ns []json.RawMessage
		if err := json.Unmarshal([]byte(out), &ns); code != 0 || err != nil {
			t.Fatalf("mynet networks: exit %d, %v\n%s", code, err, out)
		}
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

// A bad reconcile flag stops the start, naming it, with exit code 2.
func TestReconcileFlagsStopTheStart(t *testing.T) {
	for _, args := range [][]string{{"--reconcile-every", "-5m"}, {"--reconcile-grace", "soon"}, {"--docker-host", "tcp://10.0.0.1:2375"}} {
		if out, code := mynet(t, args...); code != 2 || !strings.Contains(out, args[0]) {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}
