//go:build integration

package integration

// Networks and containers that clean themselves up, commands run in
// containers, and the probes that tell whether a container reaches an
// address (ping, TCP, HTTP).

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

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
	return mustStartContainer(t, name, args, "sleep", "3600")
}

// tryRunContainer is runContainer that returns the error (and docker's output)
// instead of failing; the container is removed at cleanup either way.
func tryRunContainer(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	return startContainer(t, name, args, "sleep", "3600")
}

// runWebServer is runContainer for a busybox httpd that answers token on
// port 80, to prove which container answered.
func runWebServer(t *testing.T, name, token string, args ...string) string {
	t.Helper()
	return mustStartContainer(t, name, args, webServer(token)...)
}

// tryRunWebServer is runWebServer that returns the error instead of failing.
func tryRunWebServer(t *testing.T, name, token string, args ...string) (string, error) {
	t.Helper()
	return startContainer(t, name, args, webServer(token)...)
}

// runPublishedWebServer is runWebServer publishing port 80 on a free host
// port (-p [hostIP:]PORT:80); it returns the port and the token.
func runPublishedWebServer(t *testing.T, name, hostIP string, args ...string) (int, string) {
	t.Helper()
	port, token := freePort(t), newToken("web")
	spec := fmt.Sprintf("%d:80", port)
	if hostIP != "" {
		spec = hostIP + ":" + spec
	}
	runWebServer(t, name, token, append(slices.Clip(args), "-p", spec)...)
	return port, token
}

func webServer(token string) []string {
	return []string{"sh", "-c", "mkdir -p /www && echo " + token + " > /www/index.html && exec httpd -f -p 80 -h /www"}
}

// startContainer runs `docker run -d --name NAME ARGS... IMAGE CMD...` and
// registers the container's removal, whether the run worked or not.
func startContainer(t *testing.T, name string, args []string, cmd ...string) (string, error) {
	t.Helper()
	if !strings.HasPrefix(name, namePrefix) {
		t.Fatalf("container name %q must start with %q", name, namePrefix)
	}
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", name) })
	a := append([]string{"run", "-d", "--name", name}, args...)
	a = append(a, testImage)
	out, err := docker(t, append(a, cmd...)...)
	return strings.TrimSpace(out), err
}

func mustStartContainer(t *testing.T, name string, args []string, cmd ...string) string {
	t.Helper()
	out, err := startContainer(t, name, args, cmd...)
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", name, err, out)
	}
	return out
}

// waitRunning waits up to d until Docker says ctr runs.
func waitRunning(ctr string, d time.Duration) error {
	return eventually(d, func() error {
		out, err := dockerCmd("inspect", "-f", "{{.State.Running}}", ctr)
		if err != nil || strings.TrimSpace(out) != "true" {
			return fmt.Errorf("%s running=%q: %v", ctr, strings.TrimSpace(out), err)
		}
		return nil
	})
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
	return mustInspect[NetworkInfo](t, "network", "inspect", name)
}

// mustInspect runs a `docker ... inspect` of one object and decodes it.
func mustInspect[T any](t testing.TB, args ...string) T {
	t.Helper()
	v, err := decodeOne[T](mustDocker(t, args...))
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return v
}

// inspect is mustInspect that returns the error.
func inspect[T any](args ...string) (T, error) {
	out, err := dockerCmd(args...)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	v, err := decodeOne[T](out)
	if err != nil {
		return v, fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return v, nil
}

// decodeOne decodes what `docker inspect` prints for one object: a JSON
// list of one.
func decodeOne[T any](out string) (T, error) {
	var vs []T
	if err := json.Unmarshal([]byte(out), &vs); err != nil || len(vs) != 1 {
		var zero T
		return zero, fmt.Errorf("cannot parse (%v): %s", err, out)
	}
	return vs[0], nil
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
		n, err := inspect[NetworkInfo]("network", "inspect", id)
		if err != nil {
			if strings.Contains(err.Error(), "No such network") {
				continue
			}
			return nil, err
		}
		nets = append(nets, n)
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
	c := mustInspect[struct {
		NetworkSettings struct{ Networks map[string]EndpointInfo }
	}](t, "inspect", "--type", "container", ctr)
	ep, ok := c.NetworkSettings.Networks[netName]
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

// containerPid is the pid of the container's init (its namespaces).
func containerPid(t testing.TB, ctr string) int {
	t.Helper()
	out := mustDocker(t, "inspect", "-f", "{{.State.Pid}}", ctr)
	var pid int
	if _, err := fmt.Sscan(out, &pid); err != nil || pid <= 0 {
		t.Fatalf("container %s: pid %q", ctr, out)
	}
	return pid
}

// mynetBridge is the Linux bridge of one of our networks.
func mynetBridge(n NetworkInfo) string {
	if b := n.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	return "mn-" + n.ID[:12]
}

// ipamSetups are the two IPAM setups every main test runs with.
var ipamSetups = []struct {
	name string
	args []string // extra `docker network create` arguments
}{
	{"docker-ipam", nil},
	{"mynet-ipam", []string{"--ipam-driver", pluginName}},
}

// mynetNetArgs builds `docker network create` arguments for our driver.
func mynetNetArgs(ipam []string, extra ...string) []string {
	a := []string{"-d", pluginName}
	a = append(a, ipam...)
	return append(a, extra...)
}

// dockerExec runs cmd in container ctr and returns its trimmed combined output.
func dockerExec(ctr string, cmd ...string) (string, error) {
	out, err := dockerCmd(append([]string{"exec", ctr}, cmd...)...)
	return strings.TrimSpace(out), err
}

// mustDockerExec is dockerExec that fails the test on error.
func mustDockerExec(t testing.TB, ctr string, cmd ...string) string {
	t.Helper()
	out, err := dockerExec(ctr, cmd...)
	if err != nil {
		t.Fatalf("docker exec %s %s: %v\n%s", ctr, strings.Join(cmd, " "), err, out)
	}
	return out
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

// noPing checks that `to` does NOT answer pings from container from. The
// probe must really have been sent (a missing route or a dead container is
// not accepted as "unreachable").
func noPing(from string, to netip.Addr) error {
	tool := "ping"
	if to.Is6() {
		tool = "ping6"
	}
	// -W 1: busybox waits 10 s for late answers otherwise, even with -w.
	out, err := dockerExec(from, tool, "-c", "2", "-W", "1", "-w", "3", to.String())
	if err == nil {
		return fmt.Errorf("%s %s from %s answered, but must not:\n%s", tool, to, from, out)
	}
	if strings.Contains(out, "packets transmitted") && !strings.Contains(out, " 0 packets received") {
		return fmt.Errorf("%s %s from %s: some answers came back, but none must:\n%s", tool, to, from, out)
	}
	if !strings.Contains(out, "packets transmitted") {
		return fmt.Errorf("%s %s from %s failed without sending probes (cannot tell whether it is blocked): %v\n%s", tool, to, from, err, out)
	}
	return nil
}

// pingName pings a name (Docker's embedded DNS) from a container, retrying.
func pingName(from, name string) error {
	var out string
	err := eventually(10*time.Second, func() error {
		var err error
		out, err = dockerExec(from, "ping", "-c", "1", "-W", "2", name)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", name, from, err, out)
	}
	return nil
}

// expectPing reports an error, after what, unless from pings to.
func expectPing(t testing.TB, what, from string, to netip.Addr) {
	t.Helper()
	if err := ping(t, from, to); err != nil {
		report(t, what, err)
	}
}

// expectNoPing reports an error, after what, unless to stays silent to
// pings from container from (see noPing).
func expectNoPing(t testing.TB, what, from string, to netip.Addr) {
	t.Helper()
	if err := noPing(from, to); err != nil {
		report(t, what, err)
	}
}

func report(t testing.TB, what string, err error) {
	t.Helper()
	if what == "" {
		t.Error(err)
		return
	}
	t.Errorf("%s: %v", what, err)
}

// fetchFrom sends an HTTP/1.0 GET to ip:port from inside container ctr
// with busybox nc and returns what came back.
func fetchFrom(ctr string, ip netip.Addr, port int) (string, error) {
	return dockerExec(ctr, "sh", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s %d`, ip, port))
}

// fetchFromHas retries fetchFrom until the answer contains want.
func fetchFromHas(ctr string, ip netip.Addr, port int, want string) error {
	var out string
	err := eventually(10*time.Second, func() error {
		var err error
		out, err = fetchFrom(ctr, ip, port)
		if err == nil && !strings.Contains(out, want) {
			err = fmt.Errorf("answer lacks %q", want)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("GET http://%s:%d/ from container %s: %v\n%s", ip, port, ctr, err, out)
	}
	return nil
}

// loopback is 127.0.0.1, where published ports answer too.
var loopback = netip.MustParseAddr("127.0.0.1")

// httpGet sends an HTTP/1.0 GET from this (host) process and returns the answer.
func httpGet(addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return httpOn(c, timeout)
}

func httpOn(c net.Conn, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// httpGetHas retries httpGet until the answer contains want.
func httpGetHas(addr netip.AddrPort, want string, d time.Duration) error {
	return getHasVia(httpGet, "the host", addr, want, d)
}

// getHasVia retries get (an HTTP GET from the place named from) of addr
// until the answer contains want.
func getHasVia(get func(netip.AddrPort, time.Duration) (string, error), from string, addr netip.AddrPort, want string, d time.Duration) error {
	var out string
	err := eventually(d, func() error {
		var err error
		out, err = get(addr, 2*time.Second)
		if err == nil && !strings.Contains(out, want) {
			err = fmt.Errorf("answer lacks %q", want)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("GET http://%s/ from %s: %v\n%s", addr, from, err, out)
	}
	return nil
}

// noHTTP checks that addr does NOT serve token from the host.
func noHTTP(addr netip.AddrPort, token string) error {
	out, err := httpGet(addr, 2*time.Second)
	if err == nil && strings.Contains(out, token) {
		return fmt.Errorf("http://%s/ served %q, must not", addr, token)
	}
	return nil
}

// randHex is a short random hex string for unique names.
func randHex() string { return fmt.Sprintf("%06x", rand.IntN(1<<24)) }

// newToken is a random string a server returns, to prove who answered.
func newToken(what string) string { return "mit-" + what + "-" + randHex() }
