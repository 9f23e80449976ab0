package firewall

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// The kernel tests build, per test, a "host" network namespace (where the
// Firewall runs, as in the root namespace in production), an "outside"
// namespace behind a veth (the uplink), bridges in the host namespace and
// "container" namespaces on veths enslaved to them. Every packet stays in
// these namespaces. Nothing is done in the namespace the test started in.

var labSeq atomic.Int32

func requireKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel tests need root")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("kernel tests need %s: %v", tool, err)
		}
	}
}

// onFreshThread runs fn on a fresh locked OS thread and switches that
// thread back to its network namespace afterwards; fn may switch it
// elsewhere.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it is destroyed with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// inNS runs fn on a fresh OS thread switched into ns; processes fn starts
// are born in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	return onFreshThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return fn()
	})
}

type lab struct {
	t      *testing.T
	prefix string
	host   netns.NsHandle
	hostN  string
	out    netns.NsHandle
	fw     *Firewall
	nsByN  map[string]netns.NsHandle
	closer []func()
	mu     sync.Mutex
}

// newNamedNS creates a named namespace without switching the caller.
func (l *lab) newNamedNS(name string) netns.NsHandle {
	l.t.Helper()
	var h netns.NsHandle
	err := onFreshThread(func() error {
		var err error
		h, err = netns.NewNamed(name) // also switches the thread into it
		return err
	})
	if err != nil {
		l.t.Fatalf("create netns %s: %v", name, err)
	}
	l.t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			l.t.Errorf("delete netns %s: %v", name, err)
		}
	})
	l.nsByN[name] = h
	return h
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireKernel(t)
	l := &lab{t: t, nsByN: map[string]netns.NsHandle{}}
	l.prefix = fmt.Sprintf("mfwt%d-%d", os.Getpid()%100000, labSeq.Add(1))
	l.hostN = l.prefix + "-h"
	l.host = l.newNamedNS(l.hostN)
	l.newNamedNS(l.prefix + "-o")
	l.out = l.nsByN[l.prefix+"-o"]
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := len(l.closer) - 1; i >= 0; i-- {
			l.closer[i]()
		}
	})
	l.ip(l.hostN, "link", "set", "lo", "up")
	l.ip(l.prefix+"-o", "link", "set", "lo", "up")
	l.sysctl(l.host, "net/ipv4/ip_forward", "1")
	l.sysctl(l.host, "net/ipv6/conf/all/forwarding", "1")
	// Uplink: host 192.0.2.1 / 2001:db8:1::1 <-> outside .2 / ::2.
	l.ip(l.hostN, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", l.prefix+"-o")
	l.ip(l.hostN, "addr", "add", "192.0.2.1/24", "dev", "up0")
	l.ip(l.hostN, "addr", "add", "2001:db8:1::1/64", "dev", "up0", "nodad")
	l.ip(l.hostN, "link", "set", "up0", "up")
	l.ip(l.prefix+"-o", "addr", "add", "192.0.2.2/24", "dev", "eth0")
	l.ip(l.prefix+"-o", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
	l.ip(l.prefix+"-o", "link", "set", "eth0", "up")
	l.do(func() error {
		fw, err := New(nil)
		if fw != nil {
			// Every change is checked against a fresh iptables-save.
			fw.verifyCache = true
		}
		l.fw = fw
		return err
	})
	return l
}

// do runs fn in the host namespace and fails the test on error.
func (l *lab) do(fn func() error) {
	l.t.Helper()
	if err := inNS(l.host, fn); err != nil {
		l.t.Fatal(err)
	}
}

// hostDo runs fn in the host namespace and returns its error.
func (l *lab) hostDo(fn func() error) error { return inNS(l.host, fn) }

func (l *lab) ip(ns string, args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

func (l *lab) sysctl(ns netns.NsHandle, key, val string) {
	l.t.Helper()
	if err := inNS(ns, func() error { return os.WriteFile("/proc/sys/"+key, []byte(val), 0o644) }); err != nil {
		l.t.Fatalf("sysctl %s: %v", key, err)
	}
}

// run execs a program in the host namespace.
func (l *lab) run(name string, args ...string) string {
	l.t.Helper()
	var out []byte
	l.do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	})
	return string(out)
}

// save returns iptables-save (or ip6tables-save) of the host namespace,
// without comments and counters.
func (l *lab) save(fam family) string {
	l.t.Helper()
	name := "iptables-save"
	if fam == v6 {
		name = "ip6tables-save"
	}
	var b strings.Builder
	for _, line := range strings.Split(l.run(name), "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasPrefix(line, ":") {
			if i := strings.LastIndex(line, " ["); i > 0 {
				line = line[:i]
			}
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// normSave drops tables that hold only built-in chains with policy ACCEPT
// and no rules (iptables-nft keeps a table once it was used).
func normSave(s string) string {
	var out, cur []string
	trivial := true
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			cur, trivial = []string{line}, true
		case line == "COMMIT":
			cur = append(cur, line)
			if !trivial {
				out = append(out, cur...)
			}
			cur = nil
		case line == "":
		default:
			cur = append(cur, line)
			if !(strings.HasPrefix(line, ":") && strings.HasSuffix(line, " ACCEPT")) {
				trivial = false
			}
		}
	}
	return strings.Join(out, "\n")
}

func (l *lab) addBridge(name, gw4, gw6 string) []netip.Prefix {
	l.t.Helper()
	l.ip(l.hostN, "link", "add", name, "type", "bridge")
	var subnets []netip.Prefix
	p := netip.MustParsePrefix(gw4)
	subnets = append(subnets, p.Masked())
	l.ip(l.hostN, "addr", "add", gw4, "dev", name)
	if gw6 != "" {
		p6 := netip.MustParsePrefix(gw6)
		subnets = append(subnets, p6.Masked())
		l.ip(l.hostN, "addr", "add", gw6, "dev", name, "nodad")
	}
	l.ip(l.hostN, "link", "set", name, "up")
	return subnets
}

// addNetwork adds n's bridge with the gateway addresses gw4 and gw6 (""
// for none) and returns n with the subnets they make.
func (l *lab) addNetwork(n Network, gw4, gw6 string) Network {
	l.t.Helper()
	n.Subnets = l.addBridge(n.Bridge, gw4, gw6)
	return n
}

// routeOutsideViaHost gives the outside a route to every container subnet
// (198.18.0.0/16, fd00::/8) through the host, as a router on the uplink's
// LAN would have.
func (l *lab) routeOutsideViaHost() {
	l.t.Helper()
	l.ip(l.prefix+"-o", "route", "add", "198.18.0.0/16", "via", "192.0.2.1")
	l.ip(l.prefix+"-o", "-6", "route", "add", "fd00::/8", "via", "2001:db8:1::1")
}

// kindsLab is a lab with a network of each kind, IPv4 and IPv6 — A (ICC,
// masquerade), B (no ICC), I (internal), M (no masquerade) — containers a1
// and a2 on A, b1 on B, i1 and i2 on I, m1 on M, and the outside routing
// every container subnet through the host. No rules are in place yet.
type kindsLab struct {
	*lab
	netA, netB, netI, netM Network
	a1, a2, b1, i1, i2, m1 *ctr
}

func newKindsLab(t *testing.T) *kindsLab {
	t.Helper()
	k := &kindsLab{lab: newLab(t)}
	k.netA = k.addNetwork(Network{ID: "a00000000000ffff", Bridge: "mn-a00000000000", ICC: true, Masquerade: true}, "198.18.1.1/24", "fd00:1::1/64")
	k.netB = k.addNetwork(Network{ID: "b00000000000ffff", Bridge: "mn-b00000000000", ICC: false, Masquerade: true}, "198.18.2.1/24", "fd00:2::1/64")
	k.netI = k.addNetwork(Network{ID: "c00000000000ffff", Bridge: "myi0", ICC: true, Internal: true}, "198.18.3.1/24", "fd00:3::1/64")
	k.netM = k.addNetwork(Network{ID: "d00000000000ffff", Bridge: "mym0", ICC: true, Masquerade: false}, "198.18.4.1/24", "fd00:4::1/64")
	k.a1 = k.addContainer("a1", "mn-a00000000000", "198.18.1.2/24", "198.18.1.1", "fd00:1::2/64", "fd00:1::1")
	k.a2 = k.addContainer("a2", "mn-a00000000000", "198.18.1.3/24", "198.18.1.1", "fd00:1::3/64", "fd00:1::1")
	k.b1 = k.addContainer("b1", "mn-b00000000000", "198.18.2.2/24", "198.18.2.1", "fd00:2::2/64", "fd00:2::1")
	k.i1 = k.addContainer("i1", "myi0", "198.18.3.2/24", "198.18.3.1", "fd00:3::2/64", "fd00:3::1")
	k.i2 = k.addContainer("i2", "myi0", "198.18.3.3/24", "198.18.3.1", "fd00:3::3/64", "fd00:3::1")
	k.m1 = k.addContainer("m1", "mym0", "198.18.4.2/24", "198.18.4.1", "fd00:4::2/64", "fd00:4::1")
	k.routeOutsideViaHost()
	return k
}

type ctr struct {
	name string // namespace name
	ns   netns.NsHandle
	port string // host side veth, enslaved to the bridge
	ip4  netip.Addr
	ip6  netip.Addr
}

// addContainer puts a namespace on bridge br with the given addresses
// (prefix form) and default routes via the given gateways.
func (l *lab) addContainer(short, br, addr4, gw4, addr6, gw6 string) *ctr {
	l.t.Helper()
	name := l.prefix + "-" + short
	c := &ctr{name: name, ns: l.newNamedNS(name), port: "v" + short}
	l.ip(name, "link", "set", "lo", "up")
	l.ip(l.hostN, "link", "add", c.port, "type", "veth", "peer", "name", "eth0", "netns", name)
	l.ip(l.hostN, "link", "set", c.port, "master", br, "up")
	l.ip(name, "addr", "add", addr4, "dev", "eth0")
	c.ip4 = netip.MustParsePrefix(addr4).Addr()
	if addr6 != "" {
		l.ip(name, "addr", "add", addr6, "dev", "eth0", "nodad")
		c.ip6 = netip.MustParsePrefix(addr6).Addr()
	}
	l.ip(name, "link", "set", "eth0", "up")
	l.ip(name, "route", "add", "default", "via", gw4)
	if gw6 != "" {
		l.ip(name, "-6", "route", "add", "default", "via", gw6)
	}
	return c
}

// serve listens on TCP port in ns (all addresses, both families) and
// answers every connection with the peer's address.
func (l *lab) serve(ns netns.NsHandle, port int) {
	l.t.Helper()
	var ln net.Listener
	err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		l.t.Fatalf("listen :%d: %v", port, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peer := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			fmt.Fprintf(c, "%s\n", peer)
			c.Close()
		}
	}()
	l.mu.Lock()
	l.closer = append(l.closer, func() { ln.Close(); <-done })
	l.mu.Unlock()
}

const dialTimeout = 1200 * time.Millisecond

// dial connects from ns to addr and returns the peer address the server saw.
func dial(ns netns.NsHandle, addr string) (string, error) {
	var peer string
	err := inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		peer = strings.TrimSpace(line)
		return nil
	})
	return peer, err
}

type probe struct {
	what string
	from netns.NsHandle
	to   string // host:port
	peer string // wanted peer address seen by the server; "" = must fail
}

// check runs probes concurrently and reports every mismatch.
func (l *lab) check(probes ...probe) {
	l.t.Helper()
	type res struct {
		peer string
		err  error
	}
	results := make([]res, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer, err := dial(p.from, p.to)
			// A probe that must get through may meet links fresh from set-up
			// (IPv6 link-local addresses still in DAD hold neighbour discovery
			// back for about a second): try it again. A probe that must be
			// blocked gets one try, whose timeout is the expected answer.
			for try := 1; p.peer != "" && err != nil && try < 3; try++ {
				peer, err = dial(p.from, p.to)
			}
			results[i] = res{peer, err}
		}()
	}
	wg.Wait()
	for i, p := range probes {
		r := results[i]
		switch {
		case p.peer == "" && r.err == nil:
			l.t.Errorf("%s: %s reachable (server saw %s), want blocked", p.what, p.to, r.peer)
		case p.peer != "" && r.err != nil:
			l.t.Errorf("%s: %s: %v", p.what, p.to, r.err)
		case p.peer != "" && r.peer != p.peer:
			l.t.Errorf("%s: %s: server saw %s, want %s", p.what, p.to, r.peer, p.peer)
		}
	}
}

// apart is what must fail between containers a and b of two networks (named
// x and y) that are kept apart: a connection either way, IPv4 and IPv6.
func apart(x string, a *ctr, y string, b *ctr) []probe {
	return []probe{
		{x + "->" + y, a.ns, hp(b.ip4, 80), ""},
		{y + "->" + x, b.ns, hp(a.ip4, 80), ""},
		{x + "->" + y + " v6", a.ns, hp(b.ip6, 80), ""},
		{y + "->" + x + " v6", b.ns, hp(a.ip6, 80), ""},
	}
}

func hp(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }

func (l *lab) policy(p string) {
	l.t.Helper()
	l.run("iptables", "-P", "FORWARD", p)
	l.run("ip6tables", "-P", "FORWARD", p)
}
