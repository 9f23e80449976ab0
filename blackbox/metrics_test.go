package blackbox

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The real binary, in its own network namespace, with --metrics on a unix
// socket: protocol calls (a pool, a bridge network with one endpoint) show
// up in a scrape over that socket, and the debug log splits their time.
func TestDaemonMetricsOverUnixSocket(t *testing.T) {
	msock := filepath.Join(t.TempDir(), "metrics.sock")
	d := startDaemon(t, "--metrics", "unix:"+msock)
	for _, call := range []struct{ path, body string }{
		{"/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.77.0.0/24"}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.77.0.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.77.0.0/24"}`},
		{"/NetworkDriver.CreateNetwork", network("0123456789ab", "10.77.0.0/24")},
		{"/NetworkDriver.CreateEndpoint", endpoint("0123456789ab", "fedcba98", "10.77.0.2/24")},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"x","Options":{"com.docker.network.generic":{"nonsense":"1"}}}`},
	} {
		d.post(t, call.path, []byte(call.body))
	}
	st, err := os.Stat(msock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("metrics socket: %v %v", st, err)
	}
	r, err := unixClient(msock).Get("http://m/metrics")
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, d.log())
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	text := string(body)
	for _, want := range []string{
		`mynet_requests_total{call="IpamDriver.RequestAddress",outcome="ok"} 2`,
		`mynet_requests_total{call="NetworkDriver.CreateNetwork",outcome="ok"} 1`,
		`mynet_requests_total{call="NetworkDriver.CreateNetwork",outcome="bad_request"} 1`,
		`mynet_request_duration_seconds_count{call="NetworkDriver.CreateEndpoint"} 1`,
		`mynet_pool_allocated_addresses{pool="LocalDefault/10.77.0.0/24"} 2`,
		`mynet_pool_size_addresses{pool="LocalDefault/10.77.0.0/24"} 254`,
		`mynet_networks{backend="bridge"} 1`,
		`mynet_network_endpoints{backend="bridge",network="0123456789ab"} 1`,
		`mynet_repairs_total{kind="firewall_rules"} 0`,
		`process_resident_memory_bytes `,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// A lone CreateNetwork did netlink (the bridge) and iptables work.
	for _, part := range []string{"netlink", "iptables", "bbolt"} {
		re := regexp.MustCompile(`mynet_request_` + part + `_seconds_sum\{call="NetworkDriver.CreateNetwork"\} (\S+)`)
		if m := re.FindStringSubmatch(text); m == nil || m[1] == "0" {
			t.Errorf("no %s time for CreateNetwork in the scrape: %v", part, m)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.log())
	}
	if _, err := os.Stat(msock); !os.IsNotExist(err) {
		t.Errorf("metrics socket left after SIGTERM: %v", err)
	}
	logLine := regexp.MustCompile(`msg=request call=NetworkDriver.CreateNetwork ids=\S+ took=\S+ netlink=\S+ iptables=\S+ bbolt=\S+`)
	if !logLine.MatchString(d.log()) {
		t.Errorf("no split request line for CreateNetwork in the log:\n%s", d.log())
	}
}

// Without --metrics nothing listens: no metrics socket, and no TCP listener
// at all in the daemon's namespace. With a host:port, the same check sees
// the listener (so it can fail) and the log says TCP was asked for.
func TestDaemonMetricsOffByDefault(t *testing.T) {
	d := startDaemon(t)
	if l := d.tcpListeners(t); len(l) != 0 {
		t.Errorf("TCP listeners without --metrics: %v", l)
	}
	entries, _ := os.ReadDir(filepath.Dir(d.sock))
	for _, e := range entries {
		if e.Name() != filepath.Base(d.sock) {
			t.Errorf("unexpected socket %s", e.Name())
		}
	}
	if strings.Contains(d.log(), "metrics") {
		t.Errorf("log mentions metrics without --metrics:\n%s", d.log())
	}

	d2 := startDaemon(t, "--metrics", "127.0.0.1:9323")
	if l := d2.tcpListeners(t); len(l) != 1 {
		t.Errorf("TCP listeners with --metrics 127.0.0.1:9323: %v, want 1", l)
	}
	if !strings.Contains(d2.log(), "metrics served over TCP") {
		t.Errorf("no log line about TCP:\n%s", d2.log())
	}
}
