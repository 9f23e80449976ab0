//go:build integration

package integration

// The bridge backend end to end (issue 3): reachability, isolation, --internal,
// ICC off, MTU, IPv6, connect/disconnect, multi-homed containers, option
// errors, and "nothing is left behind" after every test.
//
// Helpers of this file (and of ports_test.go, outside_test.go,
// restart_test.go, compose_test.go) start with e2e so that they cannot clash
// with the shared harness.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/state"
)

// ---------------------------------------------------------------- containers

// e2eTryRun starts a detached container `name` with `docker run` options
// runArgs and command cmd (default `sleep 3600`), and registers its removal.
func e2eTryRun(t *testing.T, name string, runArgs []string, cmd ...string) (string, error) {
	t.Helper()
	if !strings.HasPrefix(name, namePrefix) {
		t.Fatalf("container name %q must start with %q", name, namePrefix)
	}
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", name) })
	a := append([]string{"run", "-d", "--name", name}, runArgs...)
	a = append(a, testImage)
	if len(cmd) == 0 {
		cmd = []string{"sleep", "3600"}
	}
	out, err := docker(t, append(a, cmd...)...)
	return strings.TrimSpace(out), err
}

// e2eRun is e2eTryRun that fails the test on error.
func e2eRun(t *testing.T, name string, runArgs []string, cmd ...string) {
	t.Helper()
	if out, err := e2eTryRun(t, name, runArgs, cmd...); err != nil {
		t.Fatalf("docker run %s: %v\n%s", name, err, out)
	}
}

// e2eHTTPD is the command of a container that serves token on port 80.
func e2eHTTPD(token string) []string {
	return []string{"sh", "-c", "mkdir -p /www && echo " + token + " > /www/index.html && exec httpd -f -p 80 -h /www"}
}

// e2eExec runs cmd in container ctr and returns its trimmed combined output.
func e2eExec(ctr string, cmd ...string) (string, error) {
	out, err := dockerCmd(append([]string{"exec", ctr}, cmd...)...)
	return strings.TrimSpace(out), err
}

// e2eMustExec is e2eExec that fails the test on error.
func e2eMustExec(t testing.TB, ctr string, cmd ...string) string {
	t.Helper()
	out, err := e2eExec(ctr, cmd...)
	if err != nil {
		t.Fatalf("docker exec %s %s: %v\n%s", ctr, strings.Join(cmd, " "), err, out)
	}
	return out
}

// e2eEventually retries fn every 500 ms until it succeeds or d has passed.
func e2eEventually(d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// e2eNoPing checks that `to` does NOT answer pings from container from. The
// probe must really have been sent (a missing route or a dead container is
// not accepted as "unreachable").
func e2eNoPing(from string, to netip.Addr) error {
	tool := "ping"
	if to.Is6() {
		tool = "ping6"
	}
	// -W 1: busybox waits 10 s for late answers otherwise, even with -w.
	out, err := e2eExec(from, tool, "-c", "2", "-W", "1", "-w", "3", to.String())
	if err == nil {
		return fmt.Errorf("%s %s from %s answered, but must not:\n%s", tool, to, from, out)
	}
	if !strings.Contains(out, "packets transmitted") || !strings.Contains(out, " 0 packets received") {
		return fmt.Errorf("%s %s from %s failed without sending probes (cannot tell whether it is blocked): %v\n%s", tool, to, from, err, out)
	}
	return nil
}

// e2ePingName pings a name (Docker's embedded DNS) from a container, retrying.
func e2ePingName(from, name string) error {
	var out string
	err := e2eEventually(10*time.Second, func() error {
		var err error
		out, err = e2eExec(from, "ping", "-c", "1", "-W", "2", name)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", name, from, err, out)
	}
	return nil
}

// e2eFetchFrom sends an HTTP/1.0 GET to ip:port from inside container ctr
// with busybox nc and returns what came back.
func e2eFetchFrom(ctr string, ip netip.Addr, port int) (string, error) {
	return e2eExec(ctr, "sh", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s %d`, ip, port))
}

// e2eFetchFromHas retries e2eFetchFrom until the answer contains want.
func e2eFetchFromHas(ctr string, ip netip.Addr, port int, want string) error {
	var out string
	err := e2eEventually(10*time.Second, func() error {
		var err error
		out, err = e2eFetchFrom(ctr, ip, port)
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

// e2eHTTPGet sends an HTTP/1.0 GET from this (host) process and returns the answer.
func e2eHTTPGet(addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return e2eHTTPOn(c, timeout)
}

func e2eHTTPOn(c net.Conn, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// e2eHTTPGetHas retries e2eHTTPGet until the answer contains want.
func e2eHTTPGetHas(addr netip.AddrPort, want string, d time.Duration) error {
	var out string
	err := e2eEventually(d, func() error {
		var err error
		out, err = e2eHTTPGet(addr, 2*time.Second)
		if err == nil && !strings.Contains(out, want) {
			err = fmt.Errorf("answer lacks %q", want)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("GET http://%s/ from the host: %v\n%s", addr, err, out)
	}
	return nil
}

// e2eContainerPid is the pid of the container's init (its namespaces).
func e2eContainerPid(t testing.TB, ctr string) int {
	t.Helper()
	out := mustDocker(t, "inspect", "-f", "{{.State.Pid}}", ctr)
	var pid int
	if _, err := fmt.Sscan(out, &pid); err != nil || pid <= 0 {
		t.Fatalf("container %s: pid %q", ctr, out)
	}
	return pid
}

// e2eRand is a short random hex string for unique names.
func e2eRand() string { return fmt.Sprintf("%06x", rand.IntN(1<<24)) }

// e2eToken is a random string a server returns, to prove who answered.
func e2eToken(what string) string { return "mit-" + what + "-" + e2eRand() }

// e2eV6Subnet picks a free random ULA /64 for a test.
func e2eV6Subnet(t testing.TB) netip.Prefix {
	return freeSubnet(t, fmt.Sprintf("fd4d:6974:%x::/64", rand.IntN(0xffff)))
}

// e2eV4Subnet picks a free /24 near 10.<base>.x.0.
func e2eV4Subnet(t testing.TB, base int) netip.Prefix {
	return freeSubnet(t, fmt.Sprintf("10.%d.%d.0/24", base, rand.IntN(200)))
}

// e2eBridgeOf is the Linux bridge of one of our networks.
func e2eBridgeOf(n NetworkInfo) string {
	if b := n.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	return "mn-" + n.ID[:12]
}

// e2eIPAMs are the two IPAM setups every main test runs with.
var e2eIPAMs = []struct {
	name string
	args []string // extra `docker network create` arguments
}{
	{"docker-ipam", nil},
	{"mynet-ipam", []string{"--ipam-driver", pluginName}},
}

// e2eNetArgs builds `docker network create` arguments for our driver.
func e2eNetArgs(ipam []string, extra ...string) []string {
	a := []string{"-d", pluginName}
	a = append(a, ipam...)
	return append(a, extra...)
}

// ---------------------------------------------------------------- leftovers

// e2eLeak watches one test: the networks it created and everything of
// ours (links, rules, addresses, state records) that appears during it.
type e2eLeak struct {
	t      *testing.T
	nets   []NetworkInfo
	before e2eInv
	// keepLinks are links the test made itself (e.g. a pre-existing bridge
	// handed to a network) and removes itself.
	keepLinks map[string]bool
}

// assertNoBridgeLeftovers snapshots what exists now and, once the test and
// all its cleanups (containers, networks) are done, checks that nothing of
// the test's networks is left: no mn- link, no veth, no mynet:<id> rule, no
// MYNET-*-<id> chain, no address of their subnets, no network, endpoint or
// pool record in the plugin's state. Call it FIRST in a test, so its cleanup
// runs last.
func assertNoBridgeLeftovers(t *testing.T) *e2eLeak {
	t.Helper()
	lc := &e2eLeak{t: t, before: e2eInventory(), keepLinks: map[string]bool{}}
	t.Cleanup(func() {
		var probs, first []string
		start := time.Now()
		_ = e2eEventually(15*time.Second, func() error {
			probs = lc.problems()
			if first == nil {
				first = probs
			}
			if len(probs) > 0 {
				return fmt.Errorf("leftovers")
			}
			return nil
		})
		if len(probs) == 0 && len(first) > 0 {
			t.Logf("leftover check: clean after %s; first look found %v", time.Since(start).Round(100*time.Millisecond), first)
		}
		for _, p := range probs {
			t.Errorf("leftover after the test's networks were removed: %s", p)
		}
	})
	return lc
}

// net creates a network (removed at cleanup) and watches it.
func (lc *e2eLeak) net(name string, args ...string) NetworkInfo {
	lc.t.Helper()
	n := netCreate(lc.t, name, args...)
	lc.nets = append(lc.nets, n)
	return n
}

// watch adds a network created some other way (compose).
func (lc *e2eLeak) watch(n NetworkInfo) { lc.nets = append(lc.nets, n) }

// e2eInv is what exists of ours on the host at one moment.
type e2eInv struct {
	links map[string]string       // link name -> master
	rules map[string]bool         // "ip4|ip6 table: line" for lines that mention mynet/MYNET
	addrs map[netip.Prefix]string // host address -> link
	st    e2eState                // plugin state (a copy of the file)
	stErr error
}

var (
	reRuleIDs   = regexp.MustCompile(`mynet:([0-9a-f]{12})`)
	reCounters  = regexp.MustCompile(`\[\d+:\d+\]`)
	reLinkNet   = regexp.MustCompile(`^mn-([0-9a-f]{12})$`)
	reLinkEndpt = regexp.MustCompile(`^mn[hc]([0-9a-f]{12})$`)
)

func e2eInventory() e2eInv {
	inv := e2eInv{links: map[string]string{}, rules: map[string]bool{}, addrs: map[netip.Prefix]string{}}
	if out, err := exec.Command("ip", "-j", "link", "show").Output(); err == nil {
		var ls []struct{ Ifname, Master string }
		if json.Unmarshal(out, &ls) == nil {
			for _, l := range ls {
				inv.links[l.Ifname] = l.Master
			}
		}
	}
	if out, err := exec.Command("ip", "-j", "addr", "show").Output(); err == nil {
		var ls []struct {
			Ifname   string
			AddrInfo []struct {
				Local     string `json:"local"`
				PrefixLen int    `json:"prefixlen"`
			} `json:"addr_info"`
		}
		if json.Unmarshal(out, &ls) == nil {
			for _, l := range ls {
				for _, a := range l.AddrInfo {
					if ip, err := netip.ParseAddr(a.Local); err == nil {
						inv.addrs[netip.PrefixFrom(ip, a.PrefixLen)] = l.Ifname
					}
				}
			}
		}
	}
	for fam, tool := range map[string]string{"ip4": "iptables-save", "ip6": "ip6tables-save"} {
		for _, l := range e2eRuleLines(tool) {
			if strings.Contains(strings.ToLower(l), "mynet") {
				inv.rules[fam+" "+l] = true
			}
		}
	}
	inv.st, inv.stErr = e2eReadState()
	return inv
}

// e2eRuleLines is `TOOL` output without comments and counters, each rule
// line prefixed with its table.
func e2eRuleLines(tool string) []string {
	out, err := exec.Command(tool).Output()
	if err != nil {
		return []string{"ERROR " + tool + ": " + err.Error()}
	}
	var lines []string
	table := ""
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		default:
			lines = append(lines, table+": "+strings.TrimSpace(reCounters.ReplaceAllString(l, "")))
		}
	}
	return lines
}

// e2eState is the plugin's records, read from a copy of its state file (the
// running plugin holds the file's lock, so the product's store cannot open
// the file itself, not even read-only).
type e2eState struct {
	networks  map[string]state.Network
	endpoints map[string]state.Endpoint
	pools     map[string]state.Pool
	raw       [32]byte // sha256 of the file
}

func e2eReadState() (e2eState, error) {
	st := e2eState{networks: map[string]state.Network{}, endpoints: map[string]state.Endpoint{}, pools: map[string]state.Pool{}}
	data, err := os.ReadFile(plugin.State)
	if err != nil {
		return st, err
	}
	st.raw = sha256.Sum256(data)
	f, err := os.CreateTemp("", "mit-state-*.db")
	if err != nil {
		return st, err
	}
	path := f.Name()
	defer os.Remove(path)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return st, err
	}
	f.Close()
	s, err := state.Open(path, state.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return st, fmt.Errorf("open copy of %s: %w", plugin.State, err)
	}
	defer s.Close()
	err = s.View(func(tx *state.Tx) error {
		ns, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range ns {
			st.networks[n.ID] = n
		}
		es, err := tx.Endpoints()
		if err != nil {
			return err
		}
		for _, e := range es {
			st.endpoints[e.ID] = e
		}
		ps, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, p := range ps {
			st.pools[p.ID] = p
		}
		return nil
	})
	return st, err
}

// e2eDockerView is what Docker knows now: network ids, endpoint ids and the
// subnets of networks that use our IPAM (all as 12-character prefixes).
type e2eDockerView struct {
	nets  map[string]bool
	eps   map[string]bool
	pools map[netip.Prefix]bool
}

func e2eDockerNow() (e2eDockerView, error) {
	v := e2eDockerView{nets: map[string]bool{}, eps: map[string]bool{}, pools: map[netip.Prefix]bool{}}
	nets, err := allNetworks()
	if err != nil {
		return v, err
	}
	for _, n := range nets {
		v.nets[n.ID[:12]] = true
		for _, c := range n.Containers {
			if len(c.EndpointID) >= 12 {
				v.eps[c.EndpointID[:12]] = true
			}
		}
		if n.IPAM.Driver == pluginName {
			for _, c := range n.IPAM.Config {
				if p, err := netip.ParsePrefix(c.Subnet); err == nil {
					v.pools[p.Masked()] = true
				}
			}
		}
	}
	return v, nil
}

func (lc *e2eLeak) problems() []string {
	inv := e2eInventory()
	dv, err := e2eDockerNow()
	if err != nil {
		return []string{err.Error()}
	}
	var ps []string
	add := func(f string, a ...any) { ps = append(ps, fmt.Sprintf(f, a...)) }

	// The test's own networks: nothing of them may remain.
	for _, n := range lc.nets {
		id12 := n.ID[:12]
		if dv.nets[id12] {
			add("network %s (%s) still exists in Docker", n.Name, id12)
			continue
		}
		if br := e2eBridgeOf(n); !lc.keepLinks[br] {
			if _, ok := inv.links[br]; ok {
				add("bridge %s of removed network %s", br, n.Name)
			}
		}
		for l := range inv.rules {
			if strings.Contains(l, id12) {
				add("rule of removed network %s: %s", n.Name, l)
			}
		}
		for a, dev := range inv.addrs {
			for _, s := range n.Subnets() {
				if s.Contains(a.Addr()) {
					add("address %s of removed network %s still on %s", a, n.Name, dev)
				}
			}
		}
		if inv.stErr == nil {
			if _, ok := inv.st.networks[n.ID]; ok {
				add("state still has network %s (%s)", n.Name, id12)
			}
			for _, e := range inv.st.endpoints {
				if e.NetworkID == n.ID {
					add("state still has endpoint %s of removed network %s", e.ID[:12], n.Name)
				}
			}
			for _, p := range inv.st.pools {
				for _, s := range n.Subnets() {
					if p.Pool.Overlaps(s) && !dv.pools[p.Pool.Masked()] {
						add("state still has pool %s (%s) of removed network %s", p.ID, p.Pool, n.Name)
					}
				}
			}
		}
	}

	// Anything of ours that appeared during the test and belongs to no
	// network or endpoint Docker knows.
	var linkNames []string
	for l := range inv.links {
		linkNames = append(linkNames, l)
	}
	sort.Strings(linkNames)
	for _, l := range linkNames {
		if _, old := lc.before.links[l]; old || lc.keepLinks[l] {
			continue
		}
		if m := reLinkNet.FindStringSubmatch(l); m != nil && !dv.nets[m[1]] {
			add("link %s belongs to no Docker network", l)
		}
		if m := reLinkEndpt.FindStringSubmatch(l); m != nil && !dv.eps[m[1]] {
			add("link %s (master %q) belongs to no Docker endpoint", l, inv.links[l])
		}
	}
	for l := range inv.rules {
		if lc.before.rules[l] {
			continue
		}
		for _, m := range reRuleIDs.FindAllStringSubmatch(l, -1) {
			id := m[1]
			if !dv.nets[id] {
				add("rule of no Docker network: %s", l)
				break
			}
		}
	}
	if inv.stErr != nil {
		add("cannot read the plugin state: %v", inv.stErr)
		return ps
	}
	for id := range inv.st.networks {
		if _, old := lc.before.st.networks[id]; !old && !dv.nets[id[:12]] {
			add("state has network %s that Docker does not know", id[:12])
		}
	}
	for id, e := range inv.st.endpoints {
		if _, old := lc.before.st.endpoints[id]; !old && !dv.eps[id[:12]] {
			add("state has endpoint %s (network %s, %s) that Docker does not know", id[:12], e.NetworkID[:12], e.IPv4)
		}
	}
	for id, p := range inv.st.pools {
		if _, old := lc.before.st.pools[id]; !old && !dv.pools[p.Pool.Masked()] {
			add("state has pool %s that no Docker network uses", id)
		}
	}
	return ps
}

// ---------------------------------------------------------------- tests

// Same network: by IP and by name, both ways. Two mynet networks: isolated
// both ways. mynet and Docker's bridge: isolated both ways.
func TestBridgeReachAndIsolation(t *testing.T) {
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			sfx := fmt.Sprintf("%d", i)
			a := "mit-reach-a" + sfx
			b := "mit-reach-b" + sfx
			d := "mit-reach-d" + sfx
			lc.net(a, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 81).String())...)
			lc.net(b, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 82).String())...)
			lc.net(d, "-d", "bridge", "--subnet", e2eV4Subnet(t, 83).String())
			a1, a2, b1, d1 := "mit-reach-a1-"+sfx, "mit-reach-a2-"+sfx, "mit-reach-b1-"+sfx, "mit-reach-d1-"+sfx
			e2eRun(t, a1, []string{"--network", a})
			e2eRun(t, a2, []string{"--network", a})
			e2eRun(t, b1, []string{"--network", b})
			e2eRun(t, d1, []string{"--network", d})
			ipA1, ipA2 := containerIP(t, a1, a), containerIP(t, a2, a)
			ipB1, ipD1 := containerIP(t, b1, b), containerIP(t, d1, d)

			// No docker_gwbridge: the container has exactly lo and eth0.
			if out := e2eMustExec(t, a1, "ls", "/sys/class/net"); strings.Join(strings.Fields(out), " ") != "eth0 lo" {
				t.Errorf("%s has interfaces %q, want eth0 and lo only", a1, out)
			}
			for _, c := range []struct{ from, name string }{{a1, a2}, {a2, a1}} {
				if err := e2ePingName(c.from, c.name); err != nil {
					t.Error(err)
				}
			}
			for _, c := range []struct {
				from string
				to   netip.Addr
			}{{a1, ipA2}, {a2, ipA1}} {
				if err := ping(t, c.from, c.to); err != nil {
					t.Errorf("same mynet network: %v", err)
				}
			}
			// The peers on the other side must be alive and reachable on
			// their own networks for the negative checks to mean something.
			for _, c := range []struct {
				from string
				gw   string
			}{{b1, b}, {d1, d}} {
				if err := ping(t, c.from, netip.MustParseAddr(containerNet(t, c.from, c.gw).Gateway)); err != nil {
					t.Errorf("control: %v", err)
				}
			}
			for _, c := range []struct {
				what, from string
				to         netip.Addr
			}{
				{"mynet A -> mynet B", a1, ipB1},
				{"mynet B -> mynet A", b1, ipA1},
				{"mynet A -> docker bridge", a1, ipD1},
				{"docker bridge -> mynet A", d1, ipA1},
			} {
				if err := e2eNoPing(c.from, c.to); err != nil {
					t.Errorf("%s must be isolated: %v", c.what, err)
				}
			}
		})
	}
}

// --internal: own subnet only; neither another network nor an outside
// namespace (which has a route back to the internal subnet, so only the
// firewall can stop the traffic).
func TestBridgeInternal(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	out := e2eNewOutside(t)
	srv := out.serveTCP(t)

	subI := e2eV4Subnet(t, 84)
	subN := e2eV4Subnet(t, 85)
	lc.net("mit-int-i", "-d", pluginName, "--internal", "--subnet", subI.String())
	lc.net("mit-int-n", "-d", pluginName, "--subnet", subN.String())
	e2eRun(t, "mit-int-i1", []string{"--network", "mit-int-i", "--cap-add", "NET_ADMIN"})
	e2eRun(t, "mit-int-i2", []string{"--network", "mit-int-i"})
	e2eRun(t, "mit-int-n1", []string{"--network", "mit-int-n"})
	ipI1, ipI2 := containerIP(t, "mit-int-i1", "mit-int-i"), containerIP(t, "mit-int-i2", "mit-int-i")
	ipN1 := containerIP(t, "mit-int-n1", "mit-int-n")
	gwI := netip.MustParseAddr(containerNet(t, "mit-int-i1", "mit-int-i").Gateway)

	if err := ping(t, "mit-int-i1", ipI2); err != nil {
		t.Errorf("internal network, own subnet: %v", err)
	}
	if err := ping(t, "mit-int-i2", ipI1); err != nil {
		t.Errorf("internal network, own subnet: %v", err)
	}
	// Docker gives an internal network no default route; give the container
	// routes through the gateway so that packets reach the host's firewall.
	for _, p := range []netip.Prefix{subN, out.prefix} {
		if o, err := e2eExec("mit-int-i1", "ip", "route", "add", p.String(), "via", gwI.String()); err != nil && !strings.Contains(o, "exists") {
			t.Fatalf("route %s via %s in mit-int-i1: %v\n%s", p, gwI, err, o)
		}
	}
	out.addRoute(t, subI)
	out.addRoute(t, subN)

	// Controls: the other network and the outside listener work.
	if err := ping(t, "mit-int-n1", netip.MustParseAddr(containerNet(t, "mit-int-n1", "mit-int-n").Gateway)); err != nil {
		t.Errorf("control: %v", err)
	}
	if err := srv.expectFrom("mit-int-n1", out.hostAddr, 10*time.Second); err != nil {
		t.Errorf("control: a normal mynet container cannot reach the outside namespace: %v", err)
	}

	if err := e2eNoPing("mit-int-i1", ipN1); err != nil {
		t.Errorf("internal -> other network: %v", err)
	}
	if err := e2eNoPing("mit-int-n1", ipI1); err != nil {
		t.Errorf("other network -> internal: %v", err)
	}
	if err := srv.expectNoConnFrom(t, "mit-int-i1"); err != nil {
		t.Errorf("internal -> outside namespace: %v", err)
	}
	if o, err := out.exec("busybox", "ping", "-c", "2", "-w", "3", ipI1.String()); err == nil {
		t.Errorf("outside namespace -> internal container %s answered, must not:\n%s", ipI1, o)
	}
}

// enable_icc=false: containers do not reach each other; the gateway answers.
func TestBridgeICCOff(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	lc.net("mit-icc", e2eNetArgs([]string{"--ipam-driver", pluginName}, "--subnet", e2eV4Subnet(t, 86).String(),
		"-o", "com.docker.network.bridge.enable_icc=false")...)
	port := e2eFreePort(t)
	token := e2eToken("icc")
	e2eRun(t, "mit-icc-1", []string{"--network", "mit-icc", "-p", fmt.Sprintf("%d:80", port)}, e2eHTTPD(token)...)
	e2eRun(t, "mit-icc-2", []string{"--network", "mit-icc"})
	ip1, ip2 := containerIP(t, "mit-icc-1", "mit-icc"), containerIP(t, "mit-icc-2", "mit-icc")
	gw := netip.MustParseAddr(containerNet(t, "mit-icc-1", "mit-icc").Gateway)
	for _, c := range []string{"mit-icc-1", "mit-icc-2"} {
		if err := ping(t, c, gw); err != nil {
			t.Errorf("gateway with ICC off: %v", err)
		}
	}
	if err := e2eNoPing("mit-icc-1", ip2); err != nil {
		t.Errorf("ICC off: %v", err)
	}
	if err := e2eNoPing("mit-icc-2", ip1); err != nil {
		t.Errorf("ICC off: %v", err)
	}
	// A published port stays reachable through the host address (like
	// Docker's bridge with ICC off); the container's own address does not.
	host := e2eHostAddr(t)
	if err := e2eHTTPGetHas(netip.AddrPortFrom(host, uint16(port)), token, 10*time.Second); err != nil {
		t.Errorf("control, from the host: %v", err)
	}
	if err := e2eFetchFromHas("mit-icc-2", host, port, token); err != nil {
		t.Errorf("ICC off, published port through the host address: %v", err)
	}
	if out, err := e2eFetchFrom("mit-icc-2", ip1, 80); err == nil || strings.Contains(out, token) {
		t.Errorf("ICC off, but mit-icc-2 reached %s:80 directly (%v): %q", ip1, err, out)
	}
}

// MTU (long key and the short alias) inside the container, on the host veth
// and on the bridge; container_iface_prefix names the interface.
func TestBridgeMTU(t *testing.T) {
	for i, c := range []struct {
		opt, ifname string
		mtu         int
	}{
		{"com.docker.network.driver.mtu=1400", "eth0", 1400},
		{"mtu=1380", "eth0", 1380},
	} {
		t.Run(strings.SplitN(c.opt, "=", 2)[0], func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			name := fmt.Sprintf("mit-mtu-%d", i)
			ctr := name + "-c"
			ipam := e2eIPAMs[i%2].args
			n := lc.net(name, e2eNetArgs(ipam, "--subnet", e2eV4Subnet(t, 87).String(), "-o", c.opt)...)
			e2eRun(t, ctr, []string{"--network", name})
			want := fmt.Sprint(c.mtu)
			if got := e2eMustExec(t, ctr, "cat", "/sys/class/net/"+c.ifname+"/mtu"); got != want {
				t.Errorf("MTU of %s in the container = %s, want %s", c.ifname, got, want)
			}
			ep := containerNet(t, ctr, name)
			for _, l := range []string{e2eBridgeOf(n), "mnh" + ep.EndpointID[:12]} {
				b, err := os.ReadFile(filepath.Join("/sys/class/net", l, "mtu"))
				if got := strings.TrimSpace(string(b)); err != nil || got != want {
					t.Errorf("MTU of host link %s = %q (%v), want %s", l, got, err, want)
				}
			}
		})
	}
}

func TestBridgeIfacePrefix(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	lc.net("mit-ifp", e2eNetArgs(nil, "--subnet", e2eV4Subnet(t, 87).String(), "-o", "com.docker.network.container_iface_prefix=lan")...)
	e2eRun(t, "mit-ifp-c", []string{"--network", "mit-ifp"})
	if out := e2eMustExec(t, "mit-ifp-c", "ls", "/sys/class/net"); strings.Join(strings.Fields(out), " ") != "lan0 lo" {
		t.Errorf("interfaces in the container = %q, want lan0 and lo", out)
	}
}

// Dual stack: IPv6 addresses, ping6 both ways, and IPv6 isolation between
// two networks.
func TestBridgeIPv6(t *testing.T) {
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			sfx := fmt.Sprint(i)
			v6a, v6b := e2eV6Subnet(t), e2eV6Subnet(t)
			for v6b.Overlaps(v6a) {
				v6b = e2eV6Subnet(t)
			}
			a, b := "mit-v6-a"+sfx, "mit-v6-b"+sfx
			lc.net(a, e2eNetArgs(ipam.args, "--ipv6", "--subnet", e2eV4Subnet(t, 88).String(), "--subnet", v6a.String())...)
			lc.net(b, e2eNetArgs(ipam.args, "--ipv6", "--subnet", e2eV4Subnet(t, 89).String(), "--subnet", v6b.String())...)
			c1, c2, c3 := "mit-v6-1-"+sfx, "mit-v6-2-"+sfx, "mit-v6-3-"+sfx
			e2eRun(t, c1, []string{"--network", a})
			e2eRun(t, c2, []string{"--network", a})
			e2eRun(t, c3, []string{"--network", b})
			addr6 := func(ctr, netName string, sub netip.Prefix) netip.Addr {
				ep := containerNet(t, ctr, netName)
				ip, err := netip.ParseAddr(ep.GlobalIPv6Address)
				if err != nil || !sub.Contains(ip) {
					t.Fatalf("%s: IPv6 address %q, want one in %s (%+v)", ctr, ep.GlobalIPv6Address, sub, ep)
				}
				if ep.IPv6Gateway == "" {
					t.Errorf("%s: no IPv6 gateway (%+v)", ctr, ep)
				}
				if o := e2eMustExec(t, ctr, "ip", "-6", "addr", "show", "dev", "eth0"); !strings.Contains(o, ip.String()+"/") {
					t.Errorf("%s: eth0 lacks %s:\n%s", ctr, ip, o)
				}
				return ip
			}
			ip1, ip2, ip3 := addr6(c1, a, v6a), addr6(c2, a, v6a), addr6(c3, b, v6b)
			if err := ping(t, c1, ip2); err != nil {
				t.Error(err)
			}
			if err := ping(t, c2, ip1); err != nil {
				t.Error(err)
			}
			if gw, err := netip.ParseAddr(containerNet(t, c1, a).IPv6Gateway); err == nil {
				if err := ping(t, c1, gw); err != nil {
					t.Errorf("IPv6 gateway: %v", err)
				}
			}
			if err := ping(t, c3, netip.MustParseAddr(containerNet(t, c3, b).IPv6Gateway)); err != nil {
				t.Errorf("control: %v", err)
			}
			if err := e2eNoPing(c1, ip3); err != nil {
				t.Errorf("IPv6 isolation A -> B: %v", err)
			}
			if err := e2eNoPing(c3, ip1); err != nil {
				t.Errorf("IPv6 isolation B -> A: %v", err)
			}
		})
	}
}

// docker network connect / disconnect of a running container.
func TestBridgeConnectDisconnect(t *testing.T) {
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			sfx := fmt.Sprint(i)
			a, b := "mit-conn-a"+sfx, "mit-conn-b"+sfx
			lc.net(a, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 90).String())...)
			lc.net(b, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 91).String())...)
			c1, c2, c3 := "mit-conn-1-"+sfx, "mit-conn-2-"+sfx, "mit-conn-3-"+sfx
			e2eRun(t, c1, []string{"--network", a})
			e2eRun(t, c2, []string{"--network", a})
			e2eRun(t, c3, []string{"--network", b})
			ip2, ip3 := containerIP(t, c2, a), containerIP(t, c3, b)

			mustDocker(t, "network", "connect", b, c1)
			epB := containerNet(t, c1, b)
			ip1b := netip.MustParseAddr(epB.IPAddress)
			if o := e2eMustExec(t, c1, "ip", "-o", "-4", "addr", "show", "dev", "eth1"); !strings.Contains(o, ip1b.String()+"/") {
				t.Errorf("after connect, eth1 of %s lacks %s:\n%s", c1, ip1b, o)
			}
			if err := ping(t, c1, ip3); err != nil {
				t.Errorf("after connect, to the new network: %v", err)
			}
			if err := ping(t, c3, ip1b); err != nil {
				t.Errorf("after connect, from the new network: %v", err)
			}
			if err := ping(t, c1, ip2); err != nil {
				t.Errorf("after connect, to the first network: %v", err)
			}
			if err := e2ePingName(c3, c1); err != nil {
				t.Errorf("after connect, by name: %v", err)
			}

			mustDocker(t, "network", "disconnect", b, c1)
			if o, err := e2eExec(c1, "ip", "-o", "addr"); err != nil || strings.Contains(o, ip1b.String()+"/") || strings.Contains(o, "eth1") {
				t.Errorf("after disconnect, %s still has eth1/%s (%v):\n%s", c1, ip1b, err, o)
			}
			if host := "mnh" + epB.EndpointID[:12]; e2eLinkExists(host) {
				t.Errorf("after disconnect, host veth %s still exists", host)
			}
			if err := ping(t, c1, ip2); err != nil {
				t.Errorf("after disconnect, first network: %v", err)
			}
			if err := e2eNoPing(c1, ip3); err != nil {
				t.Errorf("after disconnect, the old network must be unreachable: %v", err)
			}
		})
	}
}

func e2eLinkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// A container on two mynet networks from its start.
func TestBridgeTwoNetworks(t *testing.T) {
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			sfx := fmt.Sprint(i)
			a, b := "mit-two-a"+sfx, "mit-two-b"+sfx
			lc.net(a, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 92).String())...)
			lc.net(b, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 93).String())...)
			both, pa, pb := "mit-two-both-"+sfx, "mit-two-pa-"+sfx, "mit-two-pb-"+sfx
			t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", both) })
			mustDocker(t, "create", "--name", both, "--network", a, testImage, "sleep", "3600")
			mustDocker(t, "network", "connect", b, both)
			mustDocker(t, "start", both)
			e2eRun(t, pa, []string{"--network", a})
			e2eRun(t, pb, []string{"--network", b})
			ipA, ipB := containerIP(t, both, a), containerIP(t, both, b)
			if o := e2eMustExec(t, both, "ip", "-o", "-4", "addr"); !strings.Contains(o, ipA.String()+"/") || !strings.Contains(o, ipB.String()+"/") {
				t.Errorf("%s should have %s and %s:\n%s", both, ipA, ipB, o)
			}
			for _, c := range []struct {
				from string
				to   netip.Addr
			}{{both, containerIP(t, pa, a)}, {both, containerIP(t, pb, b)}, {pa, ipA}, {pb, ipB}} {
				if err := ping(t, c.from, c.to); err != nil {
					t.Error(err)
				}
			}
			// The two-legged container does not join the networks.
			if err := e2eNoPing(pa, containerIP(t, pb, b)); err != nil {
				t.Errorf("a -> b through nothing: %v", err)
			}
		})
	}
}

// e2eSnap is what a failed request must not change: our links, rules and
// state. Other users (a benchmark on another mynet instance) may create and
// remove networks meanwhile; diff tells their objects apart by asking Docker.
type e2eSnap struct {
	links  map[string]bool
	rules  map[string]bool // "ip4|ip6 table: rule" of ours (mention mynet)
	st     e2eState
	stErr  error
	logOff int64
}

func e2eSnapshot() e2eSnap {
	s := e2eSnap{links: map[string]bool{}, rules: map[string]bool{}, logOff: plugin.LogSize()}
	if out, err := exec.Command("ip", "-o", "link").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				s.links[strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]] = true
			}
		}
	}
	for fam, tool := range map[string]string{"ip4": "iptables-save", "ip6": "ip6tables-save"} {
		for _, l := range e2eRuleLines(tool) {
			if strings.Contains(strings.ToLower(l), "mynet") {
				s.rules[fam+" "+l] = true
			}
		}
	}
	s.st, s.stErr = e2eReadState()
	return s
}

// reFailedCreate finds the network id of a refused CreateNetwork in the
// plugin's (debug, text) log.
var reFailedCreate = regexp.MustCompile(`call=NetworkDriver.CreateNetwork ids="network=([0-9a-f]{12})`)

func e2eDiffSets(what string, before, after map[string]bool) []string {
	var d []string
	for k := range after {
		if !before[k] {
			d = append(d, what+" added: "+k)
		}
	}
	for k := range before {
		if !after[k] {
			d = append(d, what+" removed: "+k)
		}
	}
	sort.Strings(d)
	return d
}

// diff lists what changed between s and after that a refused network create
// may have caused:
//   - the refused network's own objects (its id from the plugin log): an
//     mn-<id> link, a rule or chain with <id>, a state record;
//   - a new mn* link, or a new rule with a network id, of no Docker network;
//   - a removed rule of a network Docker still has;
//   - any change to our rules that belong to no network (base chains, jumps);
//   - any change to the plugin's state records, and with rawMustMatch any
//     byte of the state file (nothing should have been written).
func (s e2eSnap) diff(after e2eSnap, rawMustMatch bool) []string {
	var d []string
	dv, err := e2eDockerNow()
	if err != nil {
		return []string{err.Error()}
	}
	failed := map[string]bool{}
	for _, m := range reFailedCreate.FindAllStringSubmatch(plugin.LogSince(s.logOff, 1000), -1) {
		failed[m[1]] = true
	}
	for id := range failed {
		if after.links["mn-"+id] {
			d = append(d, "bridge mn-"+id+" of the refused network exists")
		}
	}
	for l := range after.links {
		if s.links[l] || reLinkEndpt.MatchString(l) || !strings.HasPrefix(l, "mn") {
			continue
		}
		if m := reLinkNet.FindStringSubmatch(l); m != nil && dv.nets[m[1]] {
			continue
		}
		d = append(d, "link added: "+l)
	}
	ids := func(l string) []string {
		var out []string
		for _, m := range reRuleIDs.FindAllStringSubmatch(l, -1) {
			out = append(out, m[1])
		}
		return out
	}
	base := func(set map[string]bool) map[string]bool {
		out := map[string]bool{}
		for l := range set {
			if len(ids(l)) == 0 {
				out[l] = true
			}
		}
		return out
	}
	d = append(d, e2eDiffSets("base rule", base(s.rules), base(after.rules))...)
	for l := range after.rules {
		for _, id := range ids(l) {
			if failed[id] || (!s.rules[l] && !dv.nets[id]) {
				d = append(d, "rule of no Docker network: "+l)
				break
			}
		}
	}
	for l := range s.rules {
		if after.rules[l] {
			continue
		}
		for _, id := range ids(l) {
			if dv.nets[id] {
				d = append(d, "rule of existing network "+id+" removed: "+l)
				break
			}
		}
	}
	if s.stErr != nil || after.stErr != nil {
		return append(d, fmt.Sprintf("state unreadable: before %v, after %v", s.stErr, after.stErr))
	}
	keys := func(st e2eState) map[string]bool {
		m := map[string]bool{}
		for k, n := range st.networks {
			b, _ := json.Marshal(n)
			m["network "+k+" "+string(b)] = true
		}
		for k, e := range st.endpoints {
			b, _ := json.Marshal(e)
			m["endpoint "+k+" "+string(b)] = true
		}
		for k, p := range st.pools {
			b, _ := json.Marshal(p)
			m["pool "+k+" "+string(b)] = true
		}
		return m
	}
	d = append(d, e2eDiffSets("state record", keys(s.st), keys(after.st))...)
	if rawMustMatch && !bytes.Equal(s.st.raw[:], after.st.raw[:]) {
		d = append(d, "state file bytes changed (nothing should have been written)")
	}
	return d
}

// Unknown options and bad values: refused by `docker network create` with a
// message that names the option; nothing is left behind.
func TestBridgeBadOptions(t *testing.T) {
	cases := []struct {
		opt  string
		want []string
	}{
		{"mit_no_such_option=1", []string{"mit_no_such_option", "valid", "com.docker.network.driver.mtu"}},
		{"com.docker.network.driver.mtu=9x", []string{"com.docker.network.driver.mtu", "9x", "68"}},
		{"mtu=10", []string{"mtu", "68"}},
		{"com.docker.network.bridge.enable_icc=maybe", []string{"com.docker.network.bridge.enable_icc", "maybe", "true or false"}},
		{"com.docker.network.bridge.enable_ip_masquerade=2", []string{"com.docker.network.bridge.enable_ip_masquerade"}},
		{"com.docker.network.bridge.host_binding_ipv4=nope", []string{"com.docker.network.bridge.host_binding_ipv4", "IPv4"}},
		{"com.docker.network.bridge.name=this-name-is-far-too-long", []string{"com.docker.network.bridge.name", "15"}},
		{"com.docker.network.container_iface_prefix=e-th", []string{"com.docker.network.container_iface_prefix"}},
		{"backend=bogus", []string{"backend", "bogus", "bridge"}},
	}
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			assertNoBridgeLeftovers(t)
			sub := e2eV4Subnet(t, 94)
			for j, c := range cases {
				name := fmt.Sprintf("mit-bad-%d-%d", i, j)
				before := e2eSnapshot()
				t.Cleanup(func() { _, _ = dockerCmd("network", "rm", name) })
				out, err := docker(t, append([]string{"network", "create"}, e2eNetArgs(ipam.args, "--subnet", sub.String(), "-o", c.opt, name)...)...)
				if err == nil {
					t.Errorf("-o %s: docker network create succeeded, want an error", c.opt)
					continue
				}
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("-o %s: error does not contain %q:\n%s", c.opt, w, out)
					}
				}
				if _, err := dockerCmd("network", "inspect", name); err == nil {
					t.Errorf("-o %s: network %s exists after a failed create", c.opt, name)
				}
				var d []string
				_ = e2eEventually(5*time.Second, func() error {
					d = before.diff(e2eSnapshot(), ipam.args == nil)
					if len(d) > 0 {
						return fmt.Errorf("changed")
					}
					return nil
				})
				for _, x := range d {
					t.Errorf("-o %s: failed create changed the host: %s", c.opt, x)
				}
			}
		})
	}
}

// A bridge given by name: an existing one is used and never deleted; two
// networks cannot share a bridge.
func TestBridgeGivenBridgeName(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	br := "mitbr" + e2eRand()
	if out, err := exec.Command("ip", "link", "add", br, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add %s type bridge: %v\n%s", br, err, out)
	}
	lc.keepLinks[br] = true
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })

	sub := e2eV4Subnet(t, 95)
	n := lc.net("mit-brname-1", "-d", pluginName, "--subnet", sub.String(), "-o", "com.docker.network.bridge.name="+br)
	e2eRun(t, "mit-brname-c1", []string{"--network", n.Name})
	e2eRun(t, "mit-brname-c2", []string{"--network", n.Name})
	if err := ping(t, "mit-brname-c1", containerIP(t, "mit-brname-c2", n.Name)); err != nil {
		t.Errorf("on a given bridge: %v", err)
	}
	ep := containerNet(t, "mit-brname-c1", n.Name)
	if b, _ := os.ReadFile("/sys/class/net/mnh" + ep.EndpointID[:12] + "/master/uevent"); !strings.Contains(string(b), "INTERFACE="+br) {
		t.Errorf("host veth of mit-brname-c1 is not on %s: %q", br, b)
	}

	before := e2eSnapshot()
	out, err := docker(t, "network", "create", "-d", pluginName, "--subnet", e2eV4Subnet(t, 96).String(),
		"-o", "com.docker.network.bridge.name="+br, "mit-brname-2")
	t.Cleanup(func() { _, _ = dockerCmd("network", "rm", "mit-brname-2") })
	if err == nil {
		t.Errorf("a second network on bridge %s was created, want an error", br)
	} else if !strings.Contains(out, br) || !strings.Contains(out, "com.docker.network.bridge.name") {
		t.Errorf("error for a shared bridge does not name the bridge and the option:\n%s", out)
	}
	for _, x := range before.diff(e2eSnapshot(), true) {
		t.Errorf("failed create changed the host: %s", x)
	}

	// A given name that does not exist yet: created, and deleted with the network.
	br3 := "mitbn" + e2eRand()
	lc.net("mit-brname-3", "-d", pluginName, "--subnet", e2eV4Subnet(t, 96).String(), "-o", "com.docker.network.bridge.name="+br3)
	if !e2eLinkExists(br3) {
		t.Errorf("bridge %s was not created", br3)
	}
	netRemove(t, "mit-brname-3")
	if e2eLinkExists(br3) {
		t.Errorf("bridge %s, created for network mit-brname-3, still exists after the network was removed", br3)
	}

	netRemove(t, "mit-brname-1")
	if !e2eLinkExists(br) {
		t.Errorf("bridge %s existed before the network and was deleted with it", br)
	}
	addrs, _ := linkAddrs(br)
	for _, a := range addrs {
		if sub.Contains(a.Addr()) {
			t.Errorf("address %s left on %s after the network was removed", a, br)
		}
	}
}

// --gateway, --ip-range, --aux-address, --ip and --mac-address on a mynet
// network: the gateway is on the bridge and is the containers' default
// route; addresses and MACs are the ones asked for (else 02:42:<IPv4>).
func TestBridgeGatewayRangeMAC(t *testing.T) {
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			sub := e2eV4Subnet(t, 109)
			gw := nthAddr(sub, 254)
			rng := netip.PrefixFrom(nthAddr(sub, 128), sub.Bits()+1)
			aux := nthAddr(sub, 130)
			fixed := nthAddr(sub, 200)
			name := fmt.Sprintf("mit-gw-%d", i)
			n := lc.net(name, e2eNetArgs(ipam.args, "--subnet", sub.String(), "--ip-range", rng.String(),
				"--gateway", gw.String(), "--aux-address", "r="+aux.String())...)
			if addrs, err := linkAddrs(e2eBridgeOf(n)); err != nil || !slicesContains(addrs, netip.PrefixFrom(gw, sub.Bits())) {
				t.Errorf("bridge %s has %v (%v), want %s/%d", e2eBridgeOf(n), addrs, err, gw, sub.Bits())
			}
			const mac = "02:aa:bb:cc:dd:0e"
			c1, c2 := name+"-fixed", name+"-auto"
			e2eRun(t, c1, []string{"--network", name, "--ip", fixed.String(), "--mac-address", mac})
			e2eRun(t, c2, []string{"--network", name})
			if got := containerIP(t, c1, name); got != fixed {
				t.Errorf("--ip %s: got %s", fixed, got)
			}
			ip2 := containerIP(t, c2, name)
			if !rng.Contains(ip2) || ip2 == aux || ip2 == gw {
				t.Errorf("%s got %s, want one in --ip-range %s other than the aux address %s and the gateway", c2, ip2, rng, aux)
			}
			for _, c := range []string{c1, c2} {
				if r := e2eMustExec(t, c, "ip", "route", "show", "default"); !strings.Contains(r, "via "+gw.String()) {
					t.Errorf("%s default route %q, want via %s", c, r, gw)
				}
				if err := ping(t, c, gw); err != nil {
					t.Errorf("gateway %s: %v", gw, err)
				}
			}
			if got := e2eMustExec(t, c1, "cat", "/sys/class/net/eth0/address"); got != mac {
				t.Errorf("--mac-address %s: eth0 has %s", mac, got)
			}
			b := ip2.As4()
			if want, got := fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]), e2eMustExec(t, c2, "cat", "/sys/class/net/eth0/address"); got != want {
				t.Errorf("default MAC of %s (%s) = %s, want %s", c2, ip2, got, want)
			}
			if err := ping(t, c2, fixed); err != nil {
				t.Error(err)
			}
		})
	}
}

func slicesContains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// Two mynet networks may not overlap (issue 3: "clear error"): the second
// one, on the other IPAM so that no IPAM stops it first, is refused by name
// of the subnet, and leaves nothing behind.
func TestBridgeOverlapRefused(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	sub := e2eV4Subnet(t, 112)
	lc.net("mit-ovl-a", "-d", pluginName, "--subnet", sub.String())
	for i, extra := range [][]string{
		{"--ipam-driver", pluginName, "--subnet", sub.String()},
		{"--ipam-driver", pluginName, "--subnet", netip.PrefixFrom(sub.Addr(), sub.Bits()+1).String()},
	} {
		name := fmt.Sprintf("mit-ovl-b%d", i)
		before := e2eSnapshot()
		t.Cleanup(func() { _, _ = dockerCmd("network", "rm", name) })
		out, err := docker(t, append(append([]string{"network", "create", "-d", pluginName}, extra...), name)...)
		if err == nil {
			t.Errorf("network %s %v overlapping mit-ovl-a (%s) was created", name, extra, sub)
			continue
		}
		if !strings.Contains(out, "overlap") || !strings.Contains(out, sub.Addr().String()) {
			t.Errorf("overlap error does not say overlap and name the subnet:\n%s", out)
		}
		for _, x := range before.diff(e2eSnapshot(), false) {
			t.Errorf("refused overlapping network changed the host: %s", x)
		}
	}
}
