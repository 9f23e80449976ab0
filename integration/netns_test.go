//go:build integration

package integration

// The host's network as the tests see it: its addresses, routes and free
// subnets, links, and network namespaces of the tests' own: an "outside"
// world behind a /30 and a LAN behind a macvlan parent.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostIPv4 is a global IPv4 address of the host that is not on a bridge
// or veth (Docker's, ours, or a test's).
func hostIPv4(t testing.TB) netip.Addr {
	t.Helper()
	out, err := exec.Command("ip", "-4", "-o", "addr", "show", "scope", "global").Output()
	if err != nil {
		t.Fatalf("ip -4 -o addr show scope global: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		dev := f[1]
		skip := false
		for _, p := range []string{"mn", "docker", "br-", "veth", "mit"} {
			if strings.HasPrefix(dev, p) {
				skip = true
			}
		}
		if skip {
			continue
		}
		if p, err := netip.ParsePrefix(f[3]); err == nil {
			return p.Addr()
		}
	}
	t.Fatalf("no global IPv4 address outside bridges and veths:\n%s", out)
	return netip.Addr{}
}

// linkAddrs returns the addresses (with prefix length) configured on a host link.
func linkAddrs(dev string) ([]netip.Prefix, error) {
	m, err := hostAddrs(dev)
	ps := slices.Collect(maps.Keys(m))
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return ps, err
}

// hostAddrs maps the addresses (with prefix length) on link dev, or on all
// host links if dev is "", to their link.
func hostAddrs(dev string) (map[netip.Prefix]string, error) {
	args := []string{"-j", "addr", "show"}
	if dev != "" {
		args = append(args, "dev", dev)
	}
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
	}
	var links []struct {
		Ifname   string
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, err
	}
	m := map[netip.Prefix]string{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				m[netip.PrefixFrom(ip, a.PrefixLen)] = l.Ifname
			}
		}
	}
	return m, nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

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

// freeV6Subnet picks a free random ULA /64 for a test.
func freeV6Subnet(t testing.TB) netip.Prefix {
	return freeSubnet(t, fmt.Sprintf("fd4d:6974:%x::/64", rand.IntN(0xffff)))
}

// freeV4Subnet picks a free /24 near 10.<base>.x.0.
func freeV4Subnet(t testing.TB, base int) netip.Prefix {
	return freeSubnet(t, fmt.Sprintf("10.%d.%d.0/24", base, rand.IntN(200)))
}

// inNetns runs fn on a thread that has joined the network namespace at
// nsPath. Sockets that fn opens stay in that namespace and may be used from
// any goroutine afterwards. The thread is never handed back to the Go
// scheduler (it exits with the goroutine), so no other code runs in the
// namespace by accident.
func inNetns(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		f, err := os.Open(nsPath)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// lanParent makes a "LAN": a network namespace holding one host address,
// joined to this host by a veth pair whose host end serves as the macvlan
// parent (never eth0). It returns the parent name and the LAN host's address.
func lanParent(t *testing.T, tag string, subnet netip.Prefix) (string, netip.Addr) {
	t.Helper()
	ns, parent, peer := "mit-lan-"+tag, "mitpar"+tag, "mitlan"+tag
	lanHost := nthAddr(subnet, 254)
	vethToNetns(t, ns, parent, peer)
	mustRun(t, "ip", "-n", ns, "addr", "add", netip.PrefixFrom(lanHost, subnet.Bits()).String(), "dev", peer)
	return parent, lanHost
}

// vethToNetns creates network namespace ns and a veth pair hostIf <-> nsIf
// with nsIf in ns, both ends and ns's lo up; all of it goes at cleanup.
func vethToNetns(t *testing.T, ns, hostIf, nsIf string) {
	t.Helper()
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		_ = exec.Command("ip", "link", "del", hostIf).Run()
	})
	mustRun(t, "ip", "netns", "add", ns)
	mustRun(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	mustRun(t, "ip", "link", "set", nsIf, "netns", ns)
	mustRun(t, "ip", "link", "set", hostIf, "up")
	mustRun(t, "ip", "-n", ns, "link", "set", nsIf, "up")
	mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

// outsideNS is a network namespace of the test's own that stands for the
// world beyond the host: a veth pair host <-> outside with a /30, and in the
// outside namespace a route to that /30 only. It cannot route to container
// subnets, so a TCP connection from a container to it completes only if the
// host masqueraded the container's address to its own /30 address.
type outsideNS struct {
	name     string // network namespace (ip netns)
	hostIf   string
	nsIf     string
	prefix   netip.Prefix // the /30
	hostAddr netip.Addr   // host end, first address
	nsAddr   netip.Addr   // outside end, second address
}

func (o *outsideNS) nsPath() string { return "/run/netns/" + o.name }

// newOutside creates the namespace and the veth pair; both go at cleanup.
func newOutside(t *testing.T) *outsideNS {
	t.Helper()
	r := randHex()
	p := freeSubnet(t, fmt.Sprintf("10.199.%d.0/30", rand.IntN(250)))
	o := &outsideNS{name: "mit-out-" + r, hostIf: "mitoh" + r, nsIf: "mitoo" + r, prefix: p,
		hostAddr: nthAddr(p, 1), nsAddr: nthAddr(p, 2)}
	vethToNetns(t, o.name, o.hostIf, o.nsIf)
	mustRun(t, "ip", "addr", "add", netip.PrefixFrom(o.hostAddr, 30).String(), "dev", o.hostIf)
	mustRun(t, "ip", "-n", o.name, "addr", "add", netip.PrefixFrom(o.nsAddr, 30).String(), "dev", o.nsIf)
	// The host end must be usable before a test relies on it (no DAD for v4,
	// but the link must be up on both sides).
	if err := eventually(5*time.Second, func() error {
		b, err := os.ReadFile("/sys/class/net/" + o.hostIf + "/operstate")
		if err != nil || strings.TrimSpace(string(b)) != "up" {
			return fmt.Errorf("%s operstate %q: %v", o.hostIf, b, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return o
}

// addV6 gives the pair a /64 of its own (host ::1, outside ::2), with a
// route in the outside namespace to that /64 only.
func (o *outsideNS) addV6(t *testing.T) (host, outside netip.Addr) {
	t.Helper()
	p := freeSubnet(t, fmt.Sprintf("fd4d:6974:ff%02x::/64", rand.IntN(250)))
	host, outside = nthAddr(p, 1), nthAddr(p, 2)
	mustRun(t, "ip", "addr", "add", netip.PrefixFrom(host, 64).String(), "dev", o.hostIf, "nodad")
	mustRun(t, "ip", "-n", o.name, "addr", "add", netip.PrefixFrom(outside, 64).String(), "dev", o.nsIf, "nodad")
	return host, outside
}

// addRoute lets the outside namespace reach p through the host.
func (o *outsideNS) addRoute(t *testing.T, p netip.Prefix) {
	t.Helper()
	mustRun(t, "ip", "-n", o.name, "route", "add", p.String(), "via", o.hostAddr.String())
}

// exec runs a host binary inside the outside namespace.
func (o *outsideNS) exec(cmd ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", o.name}, cmd...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// dial opens a TCP connection from the outside namespace.
func (o *outsideNS) dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(o.nsPath(), func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}

// httpGet sends an HTTP/1.0 GET from the outside namespace.
func (o *outsideNS) httpGet(addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := o.dial(addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return httpOn(c, timeout)
}

// connRecord is one connection the outside server accepted.
type connRecord struct {
	from netip.Addr
	line string
}

// outsideServer is a TCP listener in the outside namespace that records
// the peer address and first line of every connection and answers "OK".
type outsideServer struct {
	addr netip.AddrPort
	mu   sync.Mutex
	got  []connRecord
}

func (o *outsideNS) serveTCP(t *testing.T) *outsideServer {
	t.Helper()
	return o.serveTCPOn(t, o.nsAddr)
}

// serveTCPOn listens on addr (an address of the outside namespace).
func (o *outsideNS) serveTCPOn(t *testing.T, addr netip.Addr) *outsideServer {
	t.Helper()
	var ln net.Listener
	if err := inNetns(o.nsPath(), func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", o.name, err)
	}
	s := &outsideServer{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
				s.mu.Lock()
				s.got = append(s.got, connRecord{from: from, line: strings.TrimSpace(line)})
				s.mu.Unlock()
				fmt.Fprintf(c, "OK %s\n", from)
			}(c)
		}
	}()
	return s
}

func (s *outsideServer) find(token string) (connRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.got {
		if r.line == token {
			return r, true
		}
	}
	return connRecord{}, false
}

// connectFrom makes container ctr connect to the server and send a token;
// it returns the record of that connection, if the server got one.
func (s *outsideServer) connectFrom(ctr string) (connRecord, bool, string) {
	token := newToken("outside")
	out, _ := dockerExec(ctr, "sh", "-c", fmt.Sprintf("echo %s | nc -w 3 %s %d", token, s.addr.Addr(), s.addr.Port()))
	var rec connRecord
	ok := eventually(2*time.Second, func() error {
		var found bool
		if rec, found = s.find(token); !found {
			return fmt.Errorf("not yet")
		}
		return nil
	}) == nil
	return rec, ok, out
}

// expectFrom checks that ctr can connect to the server and that the server
// sees the connection coming from wantSrc.
func (s *outsideServer) expectFrom(ctr string, wantSrc netip.Addr, d time.Duration) error {
	var rec connRecord
	var ok bool
	var out string
	_ = eventually(d, func() error {
		if rec, ok, out = s.connectFrom(ctr); !ok {
			return fmt.Errorf("no connection")
		}
		return nil
	})
	if !ok {
		return fmt.Errorf("container %s could not open a TCP connection to %s in the outside namespace (nc said %q)", ctr, s.addr, out)
	}
	if rec.from != wantSrc {
		return fmt.Errorf("the outside namespace saw the connection from %s coming from %s, want %s", ctr, rec.from, wantSrc)
	}
	return nil
}

// expectNoConnFrom checks that ctr can NOT open a connection to the server.
func (s *outsideServer) expectNoConnFrom(t *testing.T, ctr string) error {
	if rec, ok, out := s.connectFrom(ctr); ok {
		return fmt.Errorf("container %s opened a TCP connection to %s in the outside namespace (seen from %s; nc said %q), must not", ctr, s.addr, rec.from, out)
	}
	return nil
}
