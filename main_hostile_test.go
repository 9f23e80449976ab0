package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostile is one raw request of the corpus and what must come back.
type hostile struct {
	name   string
	path   string
	body   string
	status int    // expected HTTP status
	want   string // substring of the error message (the option or value named)
}

const (
	hNet = "abcdefabcdef0000000000000000000000000000000000000000000000000000"
	hEp  = "fedcbafedcba0000000000000000000000000000000000000000000000000000"
	hEp2 = "0badc0ffee000000000000000000000000000000000000000000000000000000"
)

// createNet is a CreateNetwork body for network id with driver options opts.
// The hostile ones use another subnet than the baseline network, so that
// the option, not the overlap, is what gets refused.
func createNet(id string, opts map[string]string) string {
	subnet := "10.98"
	if id == hNet {
		subnet = "10.99"
	}
	o, _ := json.Marshal(opts)
	return fmt.Sprintf(`{"NetworkID":%q,"Options":{"com.docker.network.generic":%s},
		"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"%s.0.0/24","Gateway":"%s.0.1/24"}]}`, id, o, subnet, subnet)
}

// hostileCorpus: malformed and truncated JSON, wrong types, unknown paths and
// ids, calls out of order, and option values built to escape into iptables
// or netlink arguments. None may change the kernel or the store.
var hostileCorpus = []hostile{
	{"truncated json", "/NetworkDriver.CreateNetwork", `{"NetworkID":"ab`, 400, "malformed NetworkDriver.CreateNetwork request"},
	{"wrong type", "/NetworkDriver.CreateNetwork", `{"NetworkID":5}`, 400, "malformed"},
	{"array body", "/NetworkDriver.CreateEndpoint", `[1,2,3]`, 400, "malformed"},
	{"unknown path", "/NetworkDriver.Escape", `{}`, 404, ""},
	{"path traversal", "/../../etc/passwd", `{}`, 404, ""},
	{"empty network id", "/NetworkDriver.CreateNetwork", `{}`, 400, "NetworkID"},
	{"bridge name with spaces and -j", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "br0 -j ACCEPT"}), 400, "com.docker.network.bridge.name"},
	{"bridge name leading dash", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "-A"}), 400, "com.docker.network.bridge.name"},
	{"bridge name newline", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "br0\n-A FORWARD -j ACCEPT"}), 400, "com.docker.network.bridge.name"},
	{"bridge name over 15 bytes", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "abcdefghijklmnop"}), 400, "com.docker.network.bridge.name"},
	{"bridge name slash", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "a/b"}), 400, "com.docker.network.bridge.name"},
	{"bridge name dotdot", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": ".."}), 400, "com.docker.network.bridge.name"},
	{"bridge name NUL", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "br\x00x"}), 400, "com.docker.network.bridge.name"},
	{"mtu with -j", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.driver.mtu": "1500 -j ACCEPT"}), 400, "mtu"},
	{"mtu negative", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.driver.mtu": "-1"}), 400, "mtu"},
	{"iface prefix with space", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.container_iface_prefix": "eth -j"}), 400, "com.docker.network.container_iface_prefix"},
	{"host binding with -j", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.host_binding_ipv4": "0.0.0.0 -j ACCEPT"}), 400, "com.docker.network.bridge.host_binding_ipv4"},
	{"icc not a bool", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.enable_icc": "--flush"}), 400, "com.docker.network.bridge.enable_icc"},
	{"unknown backend", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"backend": "../bridge"}), 400, "backend"},
	{"parent with -j", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"backend": "macvlan", "parent": "lo -j ACCEPT"}), 400, "parent"},
	{"parent dotdot", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"backend": "macvlan", "parent": "../../x"}), 400, "parent"},
	{"macvlan mode injection", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"backend": "macvlan", "parent": "lo", "macvlan_mode": "bridge;rm"}), 400, "macvlan_mode"},
	{"unicode bridge name", "/NetworkDriver.CreateNetwork", createNet(hEp2, map[string]string{"com.docker.network.bridge.name": "brü€"}), 400, "com.docker.network.bridge.name"},
	{"create network twice (idempotent)", "/NetworkDriver.CreateNetwork", createNet(hNet, nil), 200, ""},
	{"endpoint on unknown network", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hEp2 + `","EndpointID":"` + hEp2 + `","Interface":{"Address":"10.99.0.9/24"}}`, 400, "network"},
	{"endpoint address with -j", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `","Interface":{"Address":"10.99.0.9/24 -j ACCEPT"}}`, 400, "Address"},
	{"endpoint address outside subnet", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `","Interface":{"Address":"192.0.2.9/24"}}`, 400, "192.0.2.9"},
	{"portmap bad protocol", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `","Interface":{"Address":"10.99.0.9/24"},"Options":{"com.docker.network.portmap":[{"Proto":99,"Port":80,"HostPort":8080}]}}`, 400, "99"},
	{"portmap port out of range", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `","Interface":{"Address":"10.99.0.9/24"},"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":70000}]}}`, 400, "70000"},
	{"portmap host ip with -j", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `","Interface":{"Address":"10.99.0.9/24"},"Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":8080,"HostIP":"0.0.0.0 -j ACCEPT"}]}}`, 400, "HostIP"},
	{"endpoint twice, other address", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp + `","Interface":{"Address":"10.99.0.3/24"}}`, 400, "already exists with address 10.99.0.2/24"},
	{"endpoint twice, same address (idempotent)", "/NetworkDriver.CreateEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp + `","Interface":{"Address":"10.99.0.2/24"}}`, 200, ""},
	{"join before create endpoint", "/NetworkDriver.Join", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `","SandboxKey":"/var/run/docker/netns/x"}`, 400, hEp2[:12]},
	{"join unknown network", "/NetworkDriver.Join", `{"NetworkID":"` + hEp2 + `","EndpointID":"` + hEp + `","SandboxKey":"/x"}`, 400, "network"},
	{"delete unknown endpoint", "/NetworkDriver.DeleteEndpoint", `{"NetworkID":"` + hNet + `","EndpointID":"` + hEp2 + `"}`, 200, ""},
	{"delete unknown network", "/NetworkDriver.DeleteNetwork", `{"NetworkID":"` + hEp2 + `"}`, 200, ""},
	{"leave unknown", "/NetworkDriver.Leave", `{"NetworkID":"` + hEp2 + `","EndpointID":"` + hEp2 + `"}`, 200, ""},
	{"revoke unknown", "/NetworkDriver.RevokeExternalConnectivity", `{"NetworkID":"` + hEp2 + `","EndpointID":"` + hEp2 + `"}`, 200, ""},
	{"allocate network (swarm)", "/NetworkDriver.AllocateNetwork", `{"NetworkID":"x"}`, 500, "swarm"},
	{"pool with -j", "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.98.0.0/24 -j ACCEPT"}`, 400, "10.98.0.0/24 -j ACCEPT"},
	{"pool wrong type", "/IpamDriver.RequestPool", `{"Pool":["10.98.0.0/24"]}`, 400, "malformed"},
	{"address in unknown pool", "/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/../../x"}`, 400, "unknown pool"},
	{"release unknown address", "/IpamDriver.ReleaseAddress", `{"PoolID":"LocalDefault/10.97.0.0/24","Address":"10.97.0.5"}`, 200, ""},
	{"release unknown pool", "/IpamDriver.ReleasePool", `{"PoolID":"nosuch"}`, 200, ""},
}

var reCounters = regexp.MustCompile(`\[\d+:\d+\]|^#.*|\w+_timer +[\d.]+| tentative`)

// kernelAndStore is everything a request could change: links, addresses and
// routes, both firewalls (without counters) in the daemon's namespace, and
// its records.
func kernelAndStore(t *testing.T, d *daemon, c *http.Client) string {
	t.Helper()
	pid := strconv.Itoa(d.cmd.Process.Pid)
	var b strings.Builder
	for _, args := range [][]string{{"ip", "-d", "link"}, {"ip", "addr"}, {"ip", "route"}, {"ip", "-6", "route"}, {"iptables-save"}, {"ip6tables-save"}} {
		out, err := exec.Command("nsenter", append([]string{"-t", pid, "-n"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			b.WriteString(reCounters.ReplaceAllString(l, "") + "\n")
		}
	}
	r, err := c.Get("http://admin/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := io.ReadAll(r.Body)
	r.Body.Close()
	b.Write(snap)
	// Order-free: the kernel may list equal things in another order.
	lines := strings.Split(b.String(), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestHostileRequestsChangeNothing(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	// No periodic firewall check: it may add the IPv6 base chains between
	// two snapshots, which is not a request's doing.
	d := startDaemon(t, bin, dir, "--firewall-check", "1h")
	c := d.waitServing(t)
	admin := unixClient(filepath.Join(dir, "state.db.sock"))
	call := func(path, body string) (int, string) {
		t.Helper()
		r, err := c.Post("http://p"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer r.Body.Close()
		raw, _ := io.ReadAll(r.Body)
		var e struct{ Err string }
		json.Unmarshal(raw, &e)
		return r.StatusCode, e.Err + string(raw)
	}
	// Something for the out-of-order calls to collide with.
	if code, msg := call("/NetworkDriver.CreateNetwork", createNet(hNet, nil)); code != 200 {
		t.Fatalf("baseline network: %d %s", code, msg)
	}
	if code, msg := call("/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+hNet+`","EndpointID":"`+hEp+`","Interface":{"Address":"10.99.0.2/24"}}`); code != 200 {
		t.Fatalf("baseline endpoint: %d %s", code, msg)
	}
	// Let the new bridge settle (carrier, IPv6 DAD) before comparing.
	for prev, i := "", 0; i < 40; i++ {
		now := kernelAndStore(t, d, admin)
		if now == prev {
			break
		}
		prev = now
		time.Sleep(500 * time.Millisecond)
	}
	huge := hostile{"body over 1 MiB", "/NetworkDriver.CreateNetwork", `{"NetworkID":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "at most"}
	for _, h := range append(hostileCorpus, huge) {
		before := kernelAndStore(t, d, admin)
		code, msg := call(h.path, h.body)
		if code != h.status || !strings.Contains(msg, h.want) {
			t.Errorf("%s: got %d %q, want %d with %q", h.name, code, msg, h.status, h.want)
		}
		if after := kernelAndStore(t, d, admin); after != before {
			t.Errorf("%s changed the kernel or the store:\n%s", h.name, lineDiff(before, after))
		}
	}
	// Deleting a network with an endpoint left takes the endpoint too, and
	// doing it twice is a success that changes nothing.
	if code, msg := call("/NetworkDriver.DeleteNetwork", `{"NetworkID":"`+hNet+`"}`); code != 200 {
		t.Fatalf("delete network with its endpoint: %d %s", code, msg)
	}
	before := kernelAndStore(t, d, admin)
	for _, p := range []string{"/NetworkDriver.DeleteEndpoint", "/NetworkDriver.DeleteNetwork"} {
		if code, msg := call(p, `{"NetworkID":"`+hNet+`","EndpointID":"`+hEp+`"}`); code != 200 {
			t.Errorf("%s again: %d %s", p, code, msg)
		}
	}
	if after := kernelAndStore(t, d, admin); after != before {
		t.Errorf("repeated deletes changed something:\n%s", lineDiff(before, after))
	}
	if strings.Contains(before, "mn-abcdefabcdef") || strings.Contains(before, "mnhfedcbafedcba") || strings.Contains(before, "mynet:abcdefabcdef") {
		t.Errorf("network deleted with its endpoint left links or rules:\n%s", before)
	}
}

func lineDiff(a, b string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l, k := range ma {
		if mb[l] != k {
			out = append(out, fmt.Sprintf("- %dx %s", k-mb[l], l))
		}
	}
	for l, k := range mb {
		if ma[l] < k {
			out = append(out, fmt.Sprintf("+ %dx %s", k-ma[l], l))
		}
	}
	return strings.Join(out, "\n")
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}
