//go:build integration

package integration

// Published ports (-p) on mynet networks: from the host's own address, from
// 127.0.0.1, from another container (hairpin), from the container itself,
// from an outside namespace; a given host IP; udp; a random host port; host
// port ranges; conflicts with containers and host processes; rules and held
// sockets going away with the container. Remote-driver ports do not show in
// `docker ps` (a Docker limit), so the chosen host ports are read from our
// DNAT rules.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TCP: from the host address, 127.0.0.1, another container (hairpin through
// the host address), the container itself, the outside namespace; held by a
// socket; gone when the container stops, back when it starts.
func TestPortsTCP(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		out := newOutside(t)
		host := hostIPv4(t)
		name := fmt.Sprintf("mit-ptcp-%d", i)
		srv, cli := name+"-srv", name+"-cli"
		lc.net(name, mynetNetArgs(ipam, "--subnet", freeV4Subnet(t, 101).String())...)
		port, token := runPublishedWebServer(t, srv, "", "--network", name)
		runContainer(t, cli, "--network", name)
		ip := containerIP(t, srv, name)
		if ps := hostPortsTo("tcp", ip, 80); len(ps) != 1 || ps[0] != port {
			t.Errorf("DNAT rules to %s:80 are for host ports %v, want [%d]", ip, ps, port)
		}
		if !portHeld(t, "tcp", port) {
			t.Errorf("no socket holds host port %d/tcp", port)
		}
		if err := fetchFromHas(cli, ip, 80, token); err != nil {
			t.Fatalf("control, direct: %v", err)
		}
		hp := uint16(port)
		if err := httpGetHas(netip.AddrPortFrom(host, hp), token, 10*time.Second); err != nil {
			t.Errorf("host address: %v", err)
		}
		if err := httpGetHas(netip.AddrPortFrom(loopback, hp), token, 10*time.Second); err != nil {
			t.Errorf("127.0.0.1: %v", err)
		}
		if err := fetchFromHas(cli, host, port, token); err != nil {
			t.Errorf("hairpin from another container of the network: %v", err)
		}
		if err := fetchFromHas(srv, host, port, token); err != nil {
			t.Errorf("hairpin from the container itself: %v", err)
		}
		var o string
		if err := eventually(10*time.Second, func() error {
			var err error
			o, err = out.httpGet(netip.AddrPortFrom(out.hostAddr, hp), 2*time.Second)
			if err == nil && !strings.Contains(o, token) {
				err = fmt.Errorf("answer lacks %s", token)
			}
			return err
		}); err != nil {
			t.Errorf("from the outside namespace to %s:%d: %v\n%s", out.hostAddr, port, err, o)
		}

		if err := stopUnpublishes(t, srv, "tcp", port); err != nil {
			t.Error(err)
		}
		if _, err := httpGet(netip.AddrPortFrom(host, hp), 2*time.Second); err == nil {
			t.Errorf("host port %d still accepts connections after the container stopped", port)
		}

		mustDocker(t, "start", srv)
		if err := httpGetHas(netip.AddrPortFrom(host, hp), token, 15*time.Second); err != nil {
			t.Errorf("after docker start: %v", err)
		}
	})
}

// -p 127.0.0.1:PORT:80 answers on 127.0.0.1 only.
func TestPortsLoopbackOnly(t *testing.T) {
	lc := bridgeTest(t)
	out := newOutside(t)
	host := hostIPv4(t)
	lc.net("mit-plo", "-d", pluginName, "--subnet", freeV4Subnet(t, 102).String())
	port, token := runPublishedWebServer(t, "mit-plo-srv", "127.0.0.1", "--network", "mit-plo")
	hp := uint16(port)
	if err := httpGetHas(netip.AddrPortFrom(loopback, hp), token, 10*time.Second); err != nil {
		t.Errorf("127.0.0.1: %v", err)
	}
	if err := noHTTP(netip.AddrPortFrom(host, hp), token); err != nil {
		t.Errorf("published on 127.0.0.1 only: %v", err)
	}
	if o, err := out.httpGet(netip.AddrPortFrom(out.hostAddr, hp), 2*time.Second); err == nil && strings.Contains(o, token) {
		t.Errorf("published on 127.0.0.1 only, but the outside namespace got it through %s:%d", out.hostAddr, port)
	}
}

// udpEcho serves udp :cport inside container ctr's network namespace (the
// busybox of the test image has no `nc -u`): every datagram is answered with
// "pong <datagram>".
func udpEcho(t *testing.T, ctr string, cport int) func() {
	t.Helper()
	pid := containerPid(t, ctr)
	var pc net.PacketConn
	if err := inNetns(fmt.Sprintf("/proc/%d/ns/net", pid), func() error {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", cport))
		return err
	}); err != nil {
		t.Fatalf("udp listener in %s: %v", ctr, err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("pong "), buf[:n]...), from)
		}
	}()
	stop := func() { pc.Close() }
	t.Cleanup(stop)
	return stop
}

// udpAsk sends one datagram over c and waits for the echo.
func udpAsk(c net.Conn) error {
	defer c.Close()
	msg := newToken("udp")
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "pong "+msg {
		return fmt.Errorf("answer %q, want %q", buf[:n], "pong "+msg)
	}
	return nil
}

func TestPortsUDP(t *testing.T) {
	lc := bridgeTest(t)
	out := newOutside(t)
	host := hostIPv4(t)
	lc.net("mit-pudp", mynetNetArgs([]string{"--ipam-driver", pluginName}, "--subnet", freeV4Subnet(t, 103).String())...)
	port := freePort(t)
	runContainer(t, "mit-pudp-srv", "--network", "mit-pudp", "-p", fmt.Sprintf("%d:5000/udp", port))
	ip := containerIP(t, "mit-pudp-srv", "mit-pudp")
	stop := udpEcho(t, "mit-pudp-srv", 5000)
	if ps := hostPortsTo("udp", ip, 5000); len(ps) != 1 || ps[0] != port {
		t.Errorf("DNAT rules to %s:5000/udp are for host ports %v, want [%d]", ip, ps, port)
	}
	if !portHeld(t, "udp", port) {
		t.Errorf("no socket holds host port %d/udp", port)
	}
	for _, a := range []netip.Addr{host, loopback} {
		dst := netip.AddrPortFrom(a, uint16(port))
		if err := eventually(10*time.Second, func() error {
			c, err := net.Dial("udp4", dst.String())
			if err != nil {
				return err
			}
			return udpAsk(c)
		}); err != nil {
			t.Errorf("udp to %s from the host: %v", dst, err)
		}
	}
	dst := netip.AddrPortFrom(out.hostAddr, uint16(port))
	if err := eventually(10*time.Second, func() error {
		var c net.Conn
		if err := inNetns(out.nsPath(), func() error {
			var err error
			c, err = net.Dial("udp4", dst.String())
			return err
		}); err != nil {
			return err
		}
		return udpAsk(c)
	}); err != nil {
		t.Errorf("udp to %s from the outside namespace: %v", dst, err)
	}

	stop()
	if err := stopUnpublishes(t, "mit-pudp-srv", "udp", port); err != nil {
		t.Error(err)
	}
}

// `-p 80`: the plugin picks a host port; `-p A-B:80`: one in the range, a
// different one for a second container.
func TestPortsRandomAndRange(t *testing.T) {
	lc := bridgeTest(t)
	host := hostIPv4(t)
	lc.net("mit-prnd", "-d", pluginName, "--subnet", freeV4Subnet(t, 104).String())

	tok := newToken("rnd")
	runWebServer(t, "mit-prnd-0", tok, "--network", "mit-prnd", "-p", "80")
	ip := containerIP(t, "mit-prnd-0", "mit-prnd")
	ps := hostPortsTo("tcp", ip, 80)
	if len(ps) != 1 || ps[0] <= 0 {
		t.Errorf("-p 80: DNAT rules to %s:80 are for host ports %v, want exactly one", ip, ps)
	} else {
		if !portHeld(t, "tcp", ps[0]) {
			t.Errorf("-p 80: chosen host port %d is not held", ps[0])
		}
		if err := httpGetHas(netip.AddrPortFrom(host, uint16(ps[0])), tok, 10*time.Second); err != nil {
			t.Errorf("-p 80 (host port %d): %v", ps[0], err)
		}
	}

	const n = 6
	start := freePorts(t, n)
	rng := fmt.Sprintf("%d-%d:80", start, start+n-1)
	seen := map[int]string{}
	for j := 0; j < 2; j++ {
		ctr := fmt.Sprintf("mit-prnd-r%d", j)
		tok := newToken("range")
		runWebServer(t, ctr, tok, "--network", "mit-prnd", "-p", rng)
		ip := containerIP(t, ctr, "mit-prnd")
		ps := hostPortsTo("tcp", ip, 80)
		if len(ps) != 1 || ps[0] < start || ps[0] >= start+n {
			t.Errorf("-p %s: %s got host ports %v, want one in the range", rng, ctr, ps)
			continue
		}
		if other, dup := seen[ps[0]]; dup {
			t.Errorf("-p %s: %s and %s both got host port %d", rng, other, ctr, ps[0])
		}
		seen[ps[0]] = ctr
		if err := httpGetHas(netip.AddrPortFrom(host, uint16(ps[0])), tok, 10*time.Second); err != nil {
			t.Errorf("-p %s, %s on %d: %v", rng, ctr, ps[0], err)
		}
	}
}

// Two containers asking for one host port, or a host process holding it:
// `docker run` fails with a clear error and nothing is published.
func TestPortsConflicts(t *testing.T) {
	lc := bridgeTest(t)
	host := hostIPv4(t)
	lc.net("mit-pcfl", "-d", pluginName, "--subnet", freeV4Subnet(t, 105).String())

	port, tok := runPublishedWebServer(t, "mit-pcfl-1", "", "--network", "mit-pcfl")
	out, err := tryRunWebServer(t, "mit-pcfl-2", "second", "--network", "mit-pcfl", "-p", fmt.Sprintf("%d:80", port))
	if err == nil {
		t.Errorf("a second container got host port %d too", port)
	} else if !strings.Contains(out, "already in use") || !strings.Contains(out, strconv.Itoa(port)) {
		t.Errorf("second container on host port %d: error lacks %q and the port:\n%s", port, "already in use", out)
	}
	if err := httpGetHas(netip.AddrPortFrom(host, uint16(port)), tok, 10*time.Second); err != nil {
		t.Errorf("the first container's port after the conflict: %v", err)
	}
	if ls := dnatFor("tcp", port); len(ls) != 1 {
		t.Errorf("DNAT rules for host port %d after the conflict: %v, want exactly the first container's", port, ls)
	}

	for _, proto := range []string{"tcp", "udp"} {
		hport := freePort(t)
		var closer func() error
		if proto == "tcp" {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", hport))
			if err != nil {
				t.Fatal(err)
			}
			closer = l.Close
		} else {
			c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", hport))
			if err != nil {
				t.Fatal(err)
			}
			closer = c.Close
		}
		ctr := "mit-pcfl-host-" + proto
		out, err := tryRunContainer(t, ctr, "--network", "mit-pcfl", "-p", fmt.Sprintf("%d:80/%s", hport, proto))
		if err == nil {
			t.Errorf("docker run -p %d/%s succeeded although a host process listens on it", hport, proto)
		} else if !strings.Contains(out, "already in use") || !strings.Contains(out, strconv.Itoa(hport)) {
			t.Errorf("host process on %d/%s: error lacks %q and the port:\n%s", hport, proto, "already in use", out)
		}
		if ls := dnatFor(proto, hport); len(ls) > 0 {
			t.Errorf("DNAT rules for host port %d/%s after a failed run: %v", hport, proto, ls)
		}
		closer()
	}
}

// A host IP in -p, and the network's default host IP
// (com.docker.network.bridge.host_binding_ipv4).
func TestPortsHostIP(t *testing.T) {
	lc := bridgeTest(t)
	host := hostIPv4(t)

	lc.net("mit-phip", "-d", pluginName, "--subnet", freeV4Subnet(t, 107).String())
	port, tok := runPublishedWebServer(t, "mit-phip-a", host.String(), "--network", "mit-phip")
	if err := httpGetHas(netip.AddrPortFrom(host, uint16(port)), tok, 10*time.Second); err != nil {
		t.Errorf("-p %s:%d:80: %v", host, port, err)
	}
	if err := noHTTP(netip.AddrPortFrom(loopback, uint16(port)), tok); err != nil {
		t.Errorf("-p %s:%d:80 must not answer on 127.0.0.1: %v", host, port, err)
	}

	lc.net("mit-phip-lo", "-d", pluginName, "--subnet", freeV4Subnet(t, 108).String(),
		"-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1")
	port2, tok2 := runPublishedWebServer(t, "mit-phip-b", "", "--network", "mit-phip-lo")
	if err := httpGetHas(netip.AddrPortFrom(loopback, uint16(port2)), tok2, 10*time.Second); err != nil {
		t.Errorf("host_binding_ipv4=127.0.0.1, -p %d:80, on 127.0.0.1: %v", port2, err)
	}
	if err := noHTTP(netip.AddrPortFrom(host, uint16(port2)), tok2); err != nil {
		t.Errorf("host_binding_ipv4=127.0.0.1, -p %d:80 must not answer on %s: %v", port2, host, err)
	}
}
