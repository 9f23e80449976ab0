package metrics

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/reconcile"
	"github.com/mynet/mynet/server"
	"github.com/mynet/mynet/state"
	"github.com/mynet/mynet/timing"
)

// plugin is the protocol server with a real IPAM on a real bbolt file,
// observed by m, and m's /metrics.
func plugin(t *testing.T) (h http.Handler, m *Metrics, scrape func() map[string]*dto.MetricFamily) {
	t.Helper()
	id := testutil.IPAM(t)
	m = New()
	m.Track(id.Usage, nil)
	h = server.NewWithConfig(server.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), IPAM: id, Observe: m.ObserveRequest})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return h, m, func() map[string]*dto.MetricFamily { return scrapeURL(t, srv.Client(), srv.URL+"/metrics") }
}

func scrapeURL(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	r, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("scrape: %s", r.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r.Body)
	if err != nil {
		t.Fatalf("scrape is not the text format: %v", err)
	}
	return fams
}

func post(t *testing.T, h http.Handler, path, body string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	return rec.Code
}

// sample finds the metric of family name whose labels include all of want.
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

func counter(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if m := sample(fams, name, labels...); m != nil {
		return m.GetCounter().GetValue()
	}
	return -1
}

func gauge(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if m := sample(fams, name, labels...); m != nil {
		return m.GetGauge().GetValue()
	}
	return -1
}

func histCount(fams map[string]*dto.MetricFamily, name string, labels ...string) uint64 {
	if m := sample(fams, name, labels...); m != nil {
		return m.GetHistogram().GetSampleCount()
	}
	return 0
}

func TestRequestsOutcomesHistogramsAndPools(t *testing.T) {
	h, _, scrape := plugin(t)
	const pool = "LocalDefault/10.75.0.0/24"
	steps := []struct {
		path, body string
		code       int
	}{
		{"/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.75.0.0/24"}`, 200},
		{"/IpamDriver.RequestAddress", `{"PoolID":"` + pool + `"}`, 200},
		{"/IpamDriver.RequestAddress", `{"PoolID":"` + pool + `"}`, 200},
		{"/IpamDriver.RequestAddress", `{"PoolID":"` + pool + `","Address":"10.75.0.1"}`, 400}, // taken
		{"/IpamDriver.RequestPool", `{"Pool":`, 400},                                           // malformed
	}
	for _, s := range steps {
		if code := post(t, h, s.path, s.body); code != s.code {
			t.Fatalf("%s %s: %d, want %d", s.path, s.body, code, s.code)
		}
	}
	f := scrape()
	for _, c := range []struct {
		call, outcome string
		want          float64
	}{
		{"IpamDriver.RequestPool", "ok", 1}, {"IpamDriver.RequestPool", "bad_request", 1},
		{"IpamDriver.RequestAddress", "ok", 2}, {"IpamDriver.RequestAddress", "bad_request", 1},
	} {
		if got := counter(f, "mynet_requests_total", "call", c.call, "outcome", c.outcome); got != c.want {
			t.Errorf("mynet_requests_total{call=%s,outcome=%s} = %v, want %v", c.call, c.outcome, got, c.want)
		}
	}
	if got := counter(f, "mynet_requests_total", "outcome", "error"); got != -1 {
		t.Errorf("an error outcome appeared: %v", got)
	}
	if n := histCount(f, "mynet_request_duration_seconds", "call", "IpamDriver.RequestAddress"); n != 3 {
		t.Errorf("duration samples of RequestAddress: %d, want 3", n)
	}
	// Every call here ran alone: each has its split, and the pool request
	// (a bbolt write) spent a non-zero time in bbolt.
	for _, part := range []string{"netlink", "iptables", "bbolt"} {
		if n := histCount(f, "mynet_request_"+part+"_seconds", "call", "IpamDriver.RequestPool"); n != 2 {
			t.Errorf("%s samples of RequestPool: %d, want 2", part, n)
		}
	}
	if m := sample(f, "mynet_request_bbolt_seconds", "call", "IpamDriver.RequestPool"); m == nil || m.GetHistogram().GetSampleSum() <= 0 {
		t.Errorf("no bbolt time for RequestPool: %v", m)
	}
	if got := gauge(f, "mynet_pool_allocated_addresses", "pool", pool); got != 2 {
		t.Errorf("allocated: %v, want 2", got)
	}
	if got := gauge(f, "mynet_pool_size_addresses", "pool", pool); got != 254 {
		t.Errorf("size: %v, want 254", got)
	}
	if got := gauge(f, "mynet_pool_use_ratio", "pool", pool); math.Abs(got-2.0/254) > 1e-9 {
		t.Errorf("ratio: %v, want %v", got, 2.0/254)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds"} {
		if f[name] == nil {
			t.Errorf("%s missing: the runtime/process collectors are not registered", name)
		}
	}

	// Released addresses leave the pool gauge at once (it is read at scrape time).
	post(t, h, "/IpamDriver.ReleaseAddress", `{"PoolID":"`+pool+`","Address":"10.75.0.2"}`)
	if got := gauge(scrape(), "mynet_pool_allocated_addresses", "pool", pool); got != 1 {
		t.Errorf("allocated after a release: %v, want 1", got)
	}
}

// A call that overlaps other work is counted and timed, but its split is
// not recorded.
func TestOverlappedCallsHaveNoSplit(t *testing.T) {
	h, _, scrape := plugin(t)
	bg := timing.Begin()
	post(t, h, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.76.0.0/24"}`)
	bg.End()
	f := scrape()
	if got := counter(f, "mynet_requests_overlapped_total", "call", "IpamDriver.RequestPool"); got != 1 {
		t.Errorf("overlapped: %v, want 1", got)
	}
	if n := histCount(f, "mynet_request_duration_seconds", "call", "IpamDriver.RequestPool"); n != 1 {
		t.Errorf("duration samples: %d, want 1", n)
	}
	if n := histCount(f, "mynet_request_bbolt_seconds", "call", "IpamDriver.RequestPool"); n != 0 {
		t.Errorf("bbolt samples of an overlapped call: %d, want 0", n)
	}
}

func TestRepairsAndNetworks(t *testing.T) {
	m := New()
	m.Track(nil, func() ([]state.Network, []state.Endpoint) {
		return []state.Network{{ID: "aaaaaaaaaaaa1111", Backend: "bridge"}, {ID: "bbbbbbbbbbbb2222", Backend: "bridge"}, {ID: "cccccccccccc", Backend: "macvlan"}},
			[]state.Endpoint{{ID: "e1", NetworkID: "aaaaaaaaaaaa1111"}, {ID: "e2", NetworkID: "aaaaaaaaaaaa1111"}, {ID: "e3", NetworkID: "cccccccccccc"}}
	})
	m.Repair("firewall_rules")
	m.Repair("firewall_rules")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	f := scrapeURL(t, srv.Client(), srv.URL)
	if got := counter(f, "mynet_repairs_total", "kind", "firewall_rules"); got != 2 {
		t.Errorf("firewall_rules repairs: %v", got)
	}
	if got := counter(f, "mynet_repairs_total", "kind", "orphan_link"); got != 0 {
		t.Errorf("orphan_link repairs not present at 0: %v", got)
	}
	for _, c := range []struct {
		net  string
		want float64
	}{{"aaaaaaaaaaaa", 2}, {"bbbbbbbbbbbb", 0}, {"cccccccccccc", 1}} {
		if got := gauge(f, "mynet_network_endpoints", "network", c.net); got != c.want {
			t.Errorf("endpoints of %s: %v, want %v", c.net, got, c.want)
		}
	}
	if b, mv := gauge(f, "mynet_networks", "backend", "bridge"), gauge(f, "mynet_networks", "backend", "macvlan"); b != 2 || mv != 1 {
		t.Errorf("networks: bridge %v macvlan %v", b, mv)
	}
	if f["mynet_pool_use_ratio"] != nil {
		t.Error("pool metrics without a pool source")
	}
}

func TestParseAddr(t *testing.T) {
	for _, ok := range []string{"unix:/run/mynet/metrics.sock", "127.0.0.1:9323", "[::1]:9323", ":9323", "localhost:9323"} {
		if _, err := ParseAddr(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"unix:relative.sock", "unix:", "9323", "127.0.0.1:0", "127.0.0.1:http", "example.com:9323", "/run/x.sock"} {
		_, err := ParseAddr(bad)
		if err == nil || !strings.Contains(err.Error(), "--metrics") || !strings.Contains(err.Error(), "unix:/path.sock or host:port") && !strings.Contains(err.Error(), "absolute socket path") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// The unix socket is 0600, answers /metrics, and is gone when Serve ends.
func TestServeOnUnixSocket(t *testing.T) {
	a, err := ParseAddr("unix:" + filepath.Join(t.TempDir(), "sub", "metrics.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(a, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(a.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", st.Mode(), err)
	}
	m := New()
	m.Repair("links")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, m) }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", a.Path)
	}}}
	if got := counter(scrapeURL(t, c, "http://m/metrics"), "mynet_repairs_total", "kind", "links"); got != 1 {
		t.Errorf("over the socket: links repairs %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Path); !os.IsNotExist(err) {
		t.Fatalf("socket left: %v", err)
	}
}

// Background reconcile runs are counted by outcome (every outcome present
// from the start), and only an ok run moves the last-success time.
func TestReconcileRunsAndLastSuccess(t *testing.T) {
	_, m, scrape := plugin(t)
	f := scrape()
	for _, o := range reconcile.Outcomes {
		if got := counter(f, "mynet_reconcile_runs_total", "outcome", o); got != 0 {
			t.Errorf("mynet_reconcile_runs_total{outcome=%s} = %v at start, want 0", o, got)
		}
	}
	if got := gauge(f, "mynet_reconcile_last_success_timestamp_seconds"); got != 0 {
		t.Errorf("last success before any run: %v, want 0", got)
	}
	ok := time.Unix(1_800_000_000, 500_000_000)
	m.ReconcileRun(reconcile.OK, ok)
	m.ReconcileRun(reconcile.DockerUnreachable, ok.Add(time.Minute))
	f = scrape()
	if got := counter(f, "mynet_reconcile_runs_total", "outcome", reconcile.OK); got != 1 {
		t.Errorf("ok runs: %v, want 1", got)
	}
	if got := counter(f, "mynet_reconcile_runs_total", "outcome", reconcile.DockerUnreachable); got != 1 {
		t.Errorf("docker_unreachable runs: %v, want 1", got)
	}
	if got := gauge(f, "mynet_reconcile_last_success_timestamp_seconds"); got != 1_800_000_000.5 {
		t.Errorf("last success: %v, want the ok run's end 1800000000.5", got)
	}
}
