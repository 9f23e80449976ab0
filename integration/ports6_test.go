//go:build integration

package integration

// The IPv6 side of published ports, as on Docker's bridge: a port published
// on every address answers on the host's IPv6 addresses and [::1]; on a
// dual-stack network through ip6tables DNAT (the container sees the client's
// address), on an IPv4-only one through the socket that holds the host port
// (the container sees the host's address). An explicit IPv6 host address
// answers there only. Clients are the host and an outside namespace of the
// test's own with an IPv6 /64 of its own.

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var loopback6 = netip.IPv6Loopback()

// runPeerServer runs a busybox httpd that answers GET /cgi-bin/peer with
// "peer <client address>" as the container saw it, publishing -p spec.
func runPeerServer(t *testing.T, name, spec string, args ...string) {
	t.Helper()
	script := `mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "peer $REMOTE_ADDR"\n' > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && exec httpd -f -p 80 -h /www`
	mustStartContainer(t, name, append(args, "-p", spec), "sh", "-c", script)
}

// peerGet fetches /cgi-bin/peer at addr with dial (the host's or the outside
// namespace's) and returns the peer address the container reported.
func peerGet(dial func(netip.AddrPort, time.Duration) (net.Conn, error), addr netip.AddrPort) (string, error) {
	var got string
	err := eventually(10*time.Second, func() error {
		c, err := dial(addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /cgi-bin/peer HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		b := make([]byte, 4096)
		var out strings.Builder
		for {
			n, err := c.Read(b)
			out.Write(b[:n])
			if err != nil {
				break
			}
		}
		i := strings.Index(out.String(), "peer ")
		if i < 0 {
			return fmt.Errorf("no peer line in %q", out.String())
		}
		got = strings.Trim(strings.TrimSpace(out.String()[i+5:]), "[]")
		if j := strings.LastIndex(got, "]:"); j >= 0 {
			got = got[:j]
		}
		if a, err := netip.ParseAddr(got); err == nil {
			got = a.Unmap().String() // httpd listens on [::]: IPv4 peers are mapped
		}
		return nil
	})
	return got, err
}

func hostDial(a netip.AddrPort, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", a.String(), d)
}

// noAnswer checks that nothing serves HTTP at addr from the host.
func noAnswer(t *testing.T, what string, addr netip.AddrPort) {
	t.Helper()
	if out, err := httpGet(addr, 2*time.Second); err == nil && strings.Contains(out, "200") {
		t.Errorf("%s: http://%s/ answered, must not:\n%s", what, addr, out)
	}
}

// udpAsk6 asks the udpEcho of a published port at dst from the host.
func udpAsk6(dst netip.AddrPort) error {
	return eventually(10*time.Second, func() error {
		c, err := net.Dial("udp6", dst.String())
		if err != nil {
			return err
		}
		return udpAsk(c)
	})
}

// IPv4-only network: [::1] and the host's IPv6 addresses reach the
// container (proxied: it sees the host's address), tcp and udp; -p on
// [::1] answers there only; docker rm releases the IPv6 side too.
func TestPorts6IPv4OnlyNetwork(t *testing.T) {
	lc := bridgeTest(t)
	out := newOutside(t)
	host6, _ := out.addV6(t)
	lc.net("mit-p6v4", "-d", pluginName, "--subnet", freeV4Subnet(t, 111).String())

	port := freePort(t)
	runPeerServer(t, "mit-p6v4-srv", fmt.Sprintf("%d:80", port), "--network", "mit-p6v4", "-p", fmt.Sprintf("%d:5000/udp", port))
	gw := containerNet(t, "mit-p6v4-srv", "mit-p6v4").Gateway
	stop := udpEcho(t, "mit-p6v4-srv", 5000)
	defer stop()
	hp := uint16(port)
	for _, a := range []netip.Addr{loopback6, host6} {
		got, err := peerGet(hostDial, netip.AddrPortFrom(a, hp))
		if err != nil {
			t.Errorf("from the host to [%s]:%d: %v", a, port, err)
		} else if got != gw {
			t.Errorf("from the host to [%s]:%d: the container saw %s, want the host's address on the bridge %s", a, port, got, gw)
		}
	}
	if got, err := peerGet(out.dial, netip.AddrPortFrom(host6, hp)); err != nil {
		t.Errorf("from the outside namespace to [%s]:%d: %v", host6, port, err)
	} else if got != gw {
		t.Errorf("from the outside namespace: the container saw %s, want %s (proxied)", got, gw)
	}
	if _, err := peerGet(hostDial, netip.AddrPortFrom(loopback, hp)); err != nil {
		t.Errorf("IPv4 still answers, 127.0.0.1:%d: %v", port, err)
	}
	for _, a := range []netip.Addr{loopback6, host6} {
		if err := udpAsk6(netip.AddrPortFrom(a, hp)); err != nil {
			t.Errorf("udp [%s]:%d: %v", a, port, err)
		}
	}

	// An explicit IPv6 host address on an IPv4-only network.
	port2 := freePort(t)
	runPeerServer(t, "mit-p6v4-lo6", fmt.Sprintf("[::1]:%d:80", port2), "--network", "mit-p6v4")
	if _, err := peerGet(hostDial, netip.AddrPortFrom(loopback6, uint16(port2))); err != nil {
		t.Errorf("-p [::1]:%d:80: %v", port2, err)
	}
	noAnswer(t, "-p [::1] on the host's IPv6 address", netip.AddrPortFrom(host6, uint16(port2)))
	noAnswer(t, "-p [::1] on 127.0.0.1", netip.AddrPortFrom(loopback, uint16(port2)))

	mustDocker(t, "rm", "-f", "mit-p6v4-srv", "mit-p6v4-lo6")
	if err := eventually(5*time.Second, func() error {
		for _, p := range []int{port, port2} {
			if portHeld(t, "tcp", p) {
				return fmt.Errorf("host port %d/tcp still held after docker rm", p)
			}
		}
		if portHeld(t, "udp", port) {
			return fmt.Errorf("host port %d/udp still held after docker rm", port)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	noAnswer(t, "after docker rm", netip.AddrPortFrom(loopback6, hp))
}

// dnat6To are our ip6tables DNAT rules to [ip]:cport.
func dnat6To(proto string, ip netip.Addr, cport int) []string {
	var ls []string
	want := fmt.Sprintf("--to-destination %s", netip.AddrPortFrom(ip, uint16(cport)))
	for _, l := range ruleLines("ip6tables-save") {
		if strings.HasPrefix(l, "nat: -A MYNET-DNAT ") && strings.Contains(l, "-p "+proto+" ") && strings.HasSuffix(l, want) {
			ls = append(ls, l)
		}
	}
	return ls
}

// Dual-stack network: IPv6 clients reach the container's IPv6 address by
// DNAT and it sees their real address; [::1] and hairpin answer; an
// explicit IPv6 host address answers there only; conflicts on the IPv6
// side are refused; a plugin restart and a simulated reboot keep all of it.
func TestPorts6DualStackNetwork(t *testing.T) {
	lc := bridgeTest(t)
	out := newOutside(t)
	host6, out6 := out.addV6(t)
	nw := lc.net("mit-p6ds", "-d", pluginName, "--ipv6", "--subnet", freeV4Subnet(t, 112).String(), "--subnet", freeV6Subnet(t).String())

	port := freePort(t)
	runPeerServer(t, "mit-p6ds-srv", fmt.Sprintf("%d:80", port), "--network", "mit-p6ds")
	runContainer(t, "mit-p6ds-cli", "--network", "mit-p6ds")
	ep := containerNet(t, "mit-p6ds-srv", "mit-p6ds")
	ctr6 := netip.MustParseAddr(ep.GlobalIPv6Address)
	hp := uint16(port)

	check := func(when string) {
		t.Helper()
		if ls := dnat6To("tcp", ctr6, 80); len(ls) != 1 {
			t.Errorf("%s: ip6tables DNAT rules to [%s]:80: %v, want one", when, ctr6, ls)
		}
		if got, err := peerGet(out.dial, netip.AddrPortFrom(host6, hp)); err != nil {
			t.Errorf("%s: from the outside namespace to [%s]:%d: %v", when, host6, port, err)
		} else if got != out6.String() {
			t.Errorf("%s: the container saw %s, want the client's own address %s", when, got, out6)
		}
		if _, err := peerGet(hostDial, netip.AddrPortFrom(loopback6, hp)); err != nil {
			t.Errorf("%s: [::1]:%d: %v", when, port, err)
		}
		if _, err := peerGet(hostDial, netip.AddrPortFrom(host6, hp)); err != nil {
			t.Errorf("%s: from the host to [%s]:%d: %v", when, host6, port, err)
		}
		if o, err := dockerExec("mit-p6ds-cli", "sh", "-c", fmt.Sprintf(`printf 'GET /cgi-bin/peer HTTP/1.0\r\n\r\n' | nc -w 2 %s %d`, host6, port)); err != nil || !strings.Contains(o, "peer ") {
			t.Errorf("%s: hairpin from another container to [%s]:%d: %v\n%s", when, host6, port, err, o)
		}
	}
	check("after docker run")

	// The IPv6 side conflicts like the IPv4 side.
	if o, err := tryRunContainer(t, "mit-p6ds-dup", "--network", "mit-p6ds", "-p", fmt.Sprintf("[::1]:%d:80", port)); err == nil || !strings.Contains(o, "already in use") {
		t.Errorf("a second container on [::1]:%d: %v\n%s", port, err, o)
	}
	hport := freePort(t)
	ln, err := net.Listen("tcp6", fmt.Sprintf("[::]:%d", hport))
	if err != nil {
		t.Fatal(err)
	}
	if o, err := tryRunContainer(t, "mit-p6ds-host", "--network", "mit-p6ds", "-p", fmt.Sprintf("%d:80", hport)); err == nil || !strings.Contains(o, "already in use") {
		t.Errorf("a host process on [::]:%d, docker run -p %d:80: %v\n%s", hport, hport, err, o)
	}
	ln.Close()

	// An explicit IPv6 host address answers there only.
	port2 := freePort(t)
	runPeerServer(t, "mit-p6ds-h6", fmt.Sprintf("[%s]:%d:80", host6, port2), "--network", "mit-p6ds")
	if got, err := peerGet(out.dial, netip.AddrPortFrom(host6, uint16(port2))); err != nil || got != out6.String() {
		t.Errorf("-p [%s]:%d:80 from the outside: peer %q, %v; want %s", host6, port2, got, err, out6)
	}
	noAnswer(t, "-p [host6] on [::1]", netip.AddrPortFrom(loopback6, uint16(port2)))
	noAnswer(t, "-p [host6] on 127.0.0.1", netip.AddrPortFrom(loopback, uint16(port2)))

	if err := plugin.Restart(); err != nil {
		t.Fatalf("restart the plugin: %v", err)
	}
	check("after a plugin restart")

	// A reboot, simulated for this network: the plugin down, its rules gone
	// (the containers stay); a start brings the IPv6 side back.
	if err := plugin.Stop(); err != nil {
		t.Fatalf("stop the plugin: %v", err)
	}
	wipeOurFirewall(t, map[string]bool{nw.ID[:12]: true})
	if ls := dnat6To("tcp", ctr6, 80); len(ls) != 0 {
		t.Fatalf("the simulated reboot left ip6tables DNAT rules: %v", ls)
	}
	if err := plugin.Start(); err != nil {
		t.Fatalf("start the plugin: %v", err)
	}
	check("after a simulated reboot")

	mustDocker(t, "rm", "-f", "mit-p6ds-srv")
	if err := eventually(5*time.Second, func() error {
		if ls := dnat6To("tcp", ctr6, 80); len(ls) > 0 {
			return fmt.Errorf("ip6tables DNAT rules left after docker rm: %v", ls)
		}
		if portHeld(t, "tcp", port) {
			return fmt.Errorf("host port %d/tcp still held after docker rm", port)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
