package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// The real binary, in its own network namespace, with --metrics on a unix
// socket: protocol calls (a pool, a bridge network with one endpoint) show
// up in a scrape over that socket, and the debug log splits their time.
func TestDaemonMetricsOverUnixSocket(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	msock := filepath.Join(dir, "metrics.sock")
	d := startDaemon(t, bin, dir, "--metrics", "unix:"+msock)
	c := d.waitServing(t)
	const netID = "0123456789abcdef0123"
	for _, call := range []struct{ path, body string }{
		{"/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.77.0.0/24"}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.77.0.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.77.0.0/24"}`},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"` + netID + `","Options":{"com.docker.network.generic":{}},` +
			`"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.77.0.0/24","Gateway":"10.77.0.1/24"}]}`},
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + netID + `","EndpointID":"fedcba9876543210","Interface":{"Address":"10.77.0.2/24"},"Options":{}}`},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"x","Options":{"com.docker.network.generic":{"nonsense":"1"}}}`},
	} {
		r, err := c.Post("http://p"+call.path, "", strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	st, err := os.Stat(msock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("metrics socket: %v %v", st, err)
	}
	mc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", msock)
	}}}
	r, err := mc.Get("http://m/metrics")
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, d.out)
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
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.out)
	}
	if _, err := os.Stat(msock); !os.IsNotExist(err) {
		t.Errorf("metrics socket left after SIGTERM: %v", err)
	}
	logLine := regexp.MustCompile(`msg=request call=NetworkDriver.CreateNetwork ids=\S+ took=\S+ netlink=\S+ iptables=\S+ bbolt=\S+`)
	if !logLine.MatchString(d.out.String()) {
		t.Errorf("no split request line for CreateNetwork in the log:\n%s", d.out)
	}
}

// Without --metrics nothing listens: no metrics socket, and no TCP listener
// at all in the daemon's namespace. With a host:port, the same check sees
// the listener (so it can fail) and the log says TCP was asked for.
func TestDaemonMetricsOffByDefault(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	d := startDaemon(t, bin, dir)
	d.waitServing(t)
	if n := tcpListeners(t, d.cmd.Process.Pid); n != 0 {
		t.Errorf("%d TCP listeners without --metrics", n)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "sock"))
	for _, e := range entries {
		if e.Name() != "mt.sock" {
			t.Errorf("unexpected socket %s", e.Name())
		}
	}
	if strings.Contains(d.out.String(), "metrics") {
		t.Errorf("log mentions metrics without --metrics:\n%s", d.out)
	}

	dir2 := t.TempDir()
	d2 := startDaemon(t, bin, dir2, "--metrics", "127.0.0.1:9323")
	d2.waitServing(t)
	if n := tcpListeners(t, d2.cmd.Process.Pid); n != 1 {
		t.Errorf("%d TCP listeners with --metrics 127.0.0.1:9323, want 1", n)
	}
	if !strings.Contains(d2.out.String(), "metrics served over TCP") {
		t.Errorf("no log line about TCP:\n%s", d2.out)
	}
	for _, dd := range []*daemon{d, d2} {
		dd.cmd.Process.Signal(syscall.SIGTERM)
		dd.cmd.Wait()
	}
}

// A bad --metrics value stops the start with a message naming the flag.
func TestMetricsFlagRefusesBadValues(t *testing.T) {
	for _, bad := range []string{"9323", "unix:rel.sock", "example.com:80"} {
		if _, err := parseFlags([]string{"--metrics", bad}); err == nil || !strings.Contains(err.Error(), "--metrics") {
			t.Errorf("--metrics %q: %v", bad, err)
		}
	}
	t.Setenv("MYNET_METRICS", "unix:/run/mynet/metrics.sock")
	if c, err := parseFlags(nil); err != nil || c.metrics.Path != "/run/mynet/metrics.sock" {
		t.Errorf("MYNET_METRICS: %+v %v", c.metrics, err)
	}
}

// tcpListeners counts sockets in state LISTEN (0A) in the network namespace
// of pid, from /proc/PID/net/tcp and tcp6.
func tcpListeners(t *testing.T, pid int) int {
	t.Helper()
	n := 0
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 3 && fields[3] == "0A" {
				n++
			}
		}
		fh.Close()
	}
	return n
}
