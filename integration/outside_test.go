//go:build integration

package integration

// An "outside" network namespace of the test's own stands for the world
// beyond the host: a veth pair host <-> outside with a /30, and in the
// outside namespace a route to that /30 only. It cannot route to container
// subnets, so a TCP connection from a container to it completes only if the
// host masqueraded the container's address to its own /30 address.

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// e2eInNetns runs fn on a thread that has joined the network namespace at
// nsPath. Sockets that fn opens stay in that namespace and may be used from
// any goroutine afterwards. The thread is never handed back to the Go
// scheduler (it exits with the goroutine), so no other code runs in the
// namespace by accident.
func e2eInNetns(nsPath string, fn func() error) error {
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

// e2eOutside is one outside namespace.
type e2eOutside struct {
	name     string // network namespace (ip netns)
	hostIf   string
	nsIf     string
	prefix   netip.Prefix // the /30
	hostAddr netip.Addr   // host end, first address
	nsAddr   netip.Addr   // outside end, second address
}

func (o *e2eOutside) nsPath() string { return "/run/netns/" + o.name }

func e2eIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// e2eNewOutside creates the namespace and the veth pair; both go at cleanup.
func e2eNewOutside(t *testing.T) *e2eOutside {
	t.Helper()
	r := e2eRand()
	p := freeSubnet(t, fmt.Sprintf("10.199.%d.0/30", rand.IntN(250)))
	o := &e2eOutside{name: "mit-out-" + r, hostIf: "mitoh" + r, nsIf: "mitoo" + r, prefix: p,
		hostAddr: nthAddr(p, 1), nsAddr: nthAddr(p, 2)}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", o.name).Run()
		_ = exec.Command("ip", "link", "del", o.hostIf).Run()
	})
	e2eIP(t, "netns", "add", o.name)
	e2eIP(t, "link", "add", o.hostIf, "type", "veth", "peer", "name", o.nsIf)
	e2eIP(t, "link", "set", o.nsIf, "netns", o.name)
	e2eIP(t, "addr", "add", netip.PrefixFrom(o.hostAddr, 30).String(), "dev", o.hostIf)
	e2eIP(t, "link", "set", o.hostIf, "up")
	e2eIP(t, "-n", o.name, "addr", "add", netip.PrefixFrom(o.nsAddr, 30).String(), "dev", o.nsIf)
	e2eIP(t, "-n", o.name, "link", "set", o.nsIf, "up")
	e2eIP(t, "-n", o.name, "link", "set", "lo", "up")
	// The host end must be usable before a test relies on it (no DAD for v4,
	// but the link must be up on both sides).
	if err := e2eEventually(5*time.Second, func() error {
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
func (o *e2eOutside) addV6(t *testing.T) (host, outside netip.Addr) {
	t.Helper()
	p := freeSubnet(t, fmt.Sprintf("fd4d:6974:ff%02x::/64", rand.IntN(250)))
	host, outside = nthAddr(p, 1), nthAddr(p, 2)
	e2eIP(t, "addr", "add", netip.PrefixFrom(host, 64).String(), "dev", o.hostIf, "nodad")
	e2eIP(t, "-n", o.name, "addr", "add", netip.PrefixFrom(outside, 64).String(), "dev", o.nsIf, "nodad")
	return host, outside
}

// addRoute lets the outside namespace reach p through the host.
func (o *e2eOutside) addRoute(t *testing.T, p netip.Prefix) {
	t.Helper()
	e2eIP(t, "-n", o.name, "route", "add", p.String(), "via", o.hostAddr.String())
}

// exec runs a host binary inside the outside namespace.
func (o *e2eOutside) exec(cmd ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", o.name}, cmd...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// dial opens a TCP connection from the outside namespace.
func (o *e2eOutside) dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := e2eInNetns(o.nsPath(), func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}

// httpGet sends an HTTP/1.0 GET from the outside namespace.
func (o *e2eOutside) httpGet(addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := o.dial(addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return e2eHTTPOn(c, timeout)
}

// e2eConnRec is one connection the outside server accepted.
type e2eConnRec struct {
	from netip.Addr
	line string
}

// e2eOutsideServer is a TCP listener in the outside namespace that records
// the peer address and first line of every connection and answers "OK".
type e2eOutsideServer struct {
	addr netip.AddrPort
	mu   sync.Mutex
	got  []e2eConnRec
}

func (o *e2eOutside) serveTCP(t *testing.T) *e2eOutsideServer {
	t.Helper()
	return o.serveTCPOn(t, o.nsAddr)
}

// serveTCPOn listens on addr (an address of the outside namespace).
func (o *e2eOutside) serveTCPOn(t *testing.T, addr netip.Addr) *e2eOutsideServer {
	t.Helper()
	var ln net.Listener
	if err := e2eInNetns(o.nsPath(), func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", o.name, err)
	}
	s := &e2eOutsideServer{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
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
				s.got = append(s.got, e2eConnRec{from: from, line: strings.TrimSpace(line)})
				s.mu.Unlock()
				fmt.Fprintf(c, "OK %s\n", from)
			}(c)
		}
	}()
	return s
}

func (s *e2eOutsideServer) find(token string) (e2eConnRec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.got {
		if r.line == token {
			return r, true
		}
	}
	return e2eConnRec{}, false
}

// connectFrom makes container ctr connect to the server and send a token;
// it returns the record of that connection, if the server got one.
func (s *e2eOutsideServer) connectFrom(ctr string) (e2eConnRec, bool, string) {
	token := e2eToken("outside")
	out, _ := e2eExec(ctr, "sh", "-c", fmt.Sprintf("echo %s | nc -w 3 %s %d", token, s.addr.Addr(), s.addr.Port()))
	var rec e2eConnRec
	ok := e2eEventually(2*time.Second, func() error {
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
func (s *e2eOutsideServer) expectFrom(ctr string, wantSrc netip.Addr, d time.Duration) error {
	var rec e2eConnRec
	var ok bool
	var out string
	_ = e2eEventually(d, func() error {
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
func (s *e2eOutsideServer) expectNoConnFrom(t *testing.T, ctr string) error {
	if rec, ok, out := s.connectFrom(ctr); ok {
		return fmt.Errorf("container %s opened a TCP connection to %s in the outside namespace (seen from %s; nc said %q), must not", ctr, s.addr, rec.from, out)
	}
	return nil
}

// Outbound NAT: a container reaches the outside namespace, which sees the
// host's /30 address (it has no route to the container subnet at all).
func TestBridgeOutsideNAT(t *testing.T) {
	for i, ipam := range e2eIPAMs {
		t.Run(ipam.name, func(t *testing.T) {
			withPlugin(t)
			lc := assertNoBridgeLeftovers(t)
			out := e2eNewOutside(t)
			srv := out.serveTCP(t)
			name := fmt.Sprintf("mit-nat-%d", i)
			lc.net(name, e2eNetArgs(ipam.args, "--subnet", e2eV4Subnet(t, 97).String())...)
			e2eRun(t, name+"-c", []string{"--network", name})
			if err := srv.expectFrom(name+"-c", out.hostAddr, 10*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// enable_ip_masquerade=false: the outside cannot answer (no NAT, no route
// back); once the outside gets a route to the subnet, it sees the
// container's own address.
func TestBridgeOutsideNoMasquerade(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	out := e2eNewOutside(t)
	srv := out.serveTCP(t)
	sub := e2eV4Subnet(t, 98)
	lc.net("mit-nomasq", "-d", pluginName, "--subnet", sub.String(), "-o", "com.docker.network.bridge.enable_ip_masquerade=false")
	e2eRun(t, "mit-nomasq-c", []string{"--network", "mit-nomasq"})
	ip := containerIP(t, "mit-nomasq-c", "mit-nomasq")
	if err := ping(t, "mit-nomasq-c", netip.MustParseAddr(containerNet(t, "mit-nomasq-c", "mit-nomasq").Gateway)); err != nil {
		t.Fatalf("control: %v", err)
	}
	if err := srv.expectNoConnFrom(t, "mit-nomasq-c"); err != nil {
		t.Errorf("masquerade off: %v", err)
	}
	out.addRoute(t, sub)
	if err := srv.expectFrom("mit-nomasq-c", ip, 10*time.Second); err != nil {
		t.Errorf("masquerade off, outside routes back: %v", err)
	}
}

// IPv6 outbound NAT (README: ip6tables equivalents of every rule): a dual
// stack container reaches an IPv6 listener in the outside namespace, which
// has a route to its own /64 only and sees the host's address.
func TestBridgeOutsideNATv6(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	out := e2eNewOutside(t)
	hostV6, nsV6 := out.addV6(t)
	srv := out.serveTCPOn(t, nsV6)
	lc.net("mit-nat6", "-d", pluginName, "--ipv6", "--subnet", e2eV4Subnet(t, 99).String(), "--subnet", e2eV6Subnet(t).String())
	e2eRun(t, "mit-nat6-c", []string{"--network", "mit-nat6"})
	gw6, err := netip.ParseAddr(containerNet(t, "mit-nat6-c", "mit-nat6").IPv6Gateway)
	if err != nil {
		t.Fatalf("no IPv6 gateway: %v", err)
	}
	if err := ping(t, "mit-nat6-c", gw6); err != nil {
		t.Fatalf("control: %v", err)
	}
	if err := srv.expectFrom("mit-nat6-c", hostV6, 10*time.Second); err != nil {
		t.Error(err)
	}
}

// e2eForwardPolicy sets the FORWARD policy of iptables and ip6tables for the
// test and puts the previous ones back at cleanup.
func e2eForwardPolicy(t *testing.T, policy string) {
	t.Helper()
	for _, tool := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command(tool, "-S", "FORWARD").Output()
		if err != nil {
			t.Fatalf("%s -S FORWARD: %v", tool, err)
		}
		var prev string
		if f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0]); len(f) == 3 && f[0] == "-P" {
			prev = f[2]
		}
		if prev == "" {
			t.Fatalf("%s: no FORWARD policy in %q", tool, out)
		}
		if prev == policy {
			continue
		}
		if out, err := exec.Command(tool, "-P", "FORWARD", policy).CombinedOutput(); err != nil {
			t.Fatalf("%s -P FORWARD %s: %v: %s", tool, policy, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command(tool, "-P", "FORWARD", prev).CombinedOutput(); err != nil {
				t.Errorf("%s -P FORWARD %s: %v: %s", tool, prev, err, out)
			}
		})
	}
}

// The attacker's side: a neighbour (the outside namespace) routes the
// container subnets, IPv4 and IPv6, through the host, and the FORWARD policy
// is ACCEPT in both families (as dockerd leaves it when forwarding was on
// before it started). It reaches the container's published port through the
// host, and nothing on the container's own addresses: neither the published
// container port nor any other.
func TestBridgeOutsideNoDirectAccess(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	e2eForwardPolicy(t, "ACCEPT")
	out := e2eNewOutside(t)
	hostV6, _ := out.addV6(t)
	sub4, sub6 := e2eV4Subnet(t, 103), e2eV6Subnet(t)
	lc.net("mit-direct", "-d", pluginName, "--ipv6", "--subnet", sub4.String(), "--subnet", sub6.String())
	port := e2eFreePort(t)
	token := e2eToken("direct")
	e2eRun(t, "mit-direct-pub", []string{"--network", "mit-direct", "-p", fmt.Sprintf("%d:80", port)}, e2eHTTPD(token)...)
	e2eRun(t, "mit-direct-unpub", []string{"--network", "mit-direct"}, e2eHTTPD(token)...)
	out.addRoute(t, sub4)
	e2eIP(t, "-n", out.name, "-6", "route", "add", sub6.String(), "via", hostV6.String())

	var o string
	if err := e2eEventually(10*time.Second, func() error {
		var err error
		o, err = out.httpGet(netip.AddrPortFrom(out.hostAddr, uint16(port)), 2*time.Second)
		if err == nil && !strings.Contains(o, token) {
			err = fmt.Errorf("answer lacks %s", token)
		}
		return err
	}); err != nil {
		t.Fatalf("control, the published port through the host: %v\n%s", err, o)
	}
	for _, ctr := range []string{"mit-direct-pub", "mit-direct-unpub"} {
		ep := containerNet(t, ctr, "mit-direct")
		for _, s := range []string{ep.IPAddress, ep.GlobalIPv6Address} {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				t.Fatalf("%s: address %q: %v", ctr, s, err)
			}
			if err := e2eFetchFromHas("mit-direct-unpub", ip, 80, token); err != nil {
				t.Errorf("control, from the same network to %s: %v", ip, err)
			}
			if c, err := out.dial(netip.AddrPortFrom(ip, 80), 2*time.Second); err == nil {
				c.Close()
				t.Errorf("the outside namespace opened a connection to %s:80 (%s) directly", ip, ctr)
			}
		}
	}
}
