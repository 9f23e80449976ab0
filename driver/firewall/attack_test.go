package firewall

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mynet/mynet/state"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// These tests take the attacker's side: a neighbour on the uplink that
// routes the container subnets through the host, and a container that crafts
// packets to the host's loopback. The FORWARD policy is ACCEPT throughout, so
// whatever is refused is refused by our rules.

// udpSink records the payloads of the datagrams that reach a socket.
type udpSink struct {
	mu  sync.Mutex
	got map[string]netip.Addr // payload -> source
}

// listenUDP opens a UDP socket on addr in ns, closed at cleanup.
func (l *lab) listenUDP(ns netns.NsHandle, addr string) *udpSink {
	l.t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
		l.t.Fatalf("listen udp %s: %v", addr, err)
	}
	s := &udpSink{got: map[string]netip.Addr{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got[string(buf[:n])] = from.(*net.UDPAddr).AddrPort().Addr().Unmap()
			s.mu.Unlock()
		}
	}()
	l.mu.Lock()
	l.closer = append(l.closer, func() { pc.Close(); <-done })
	l.mu.Unlock()
	return s
}

// saw waits up to a second for payload.
func (s *udpSink) saw(payload string) bool {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		_, ok := s.got[payload]
		s.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// sendUDPFrom sends payload from ns to "to", from the local address "from".
func sendUDPFrom(ns netns.NsHandle, from, to, payload string) error {
	return inNS(ns, func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(to)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// sendRawUDP does what a container with CAP_NET_RAW can do: write an IPv4
// UDP packet of its own making, with any destination, straight to the
// link-layer address dstMAC out of interface ifname (no route lookup).
func sendRawUDP(ns netns.NsHandle, ifname string, dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload string) error {
	return inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_IP)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index, Halen: 6}
		copy(to.Addr[:], dstMAC)
		return unix.Sendto(fd, ipv4UDP(src, dst, []byte(payload)), 0, to)
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipv4UDP builds an IPv4 packet carrying one UDP datagram (UDP checksum 0:
// none, allowed in IPv4).
func ipv4UDP(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// TestNoNewConnectionsFromOutside: with the FORWARD policy at ACCEPT, a
// neighbour that routes the container subnets through the host reaches no
// container directly, in any kind of network, IPv4 or IPv6; only published
// ports (DNAT) get in, and the containers' own traffic and its answers flow.
func TestNoNewConnectionsFromOutside(t *testing.T) {
	// The neighbour routes every container subnet through the host, and
	// the host checks no source path: what stops it must be our rules.
	k := newKindsLab(t)
	l, netA, netB, netI, netM := k.lab, k.netA, k.netB, k.netI, k.netM
	a1, a2, b1, i1, i2, m1 := k.a1, k.a2, k.b1, k.i1, k.i2, k.m1
	l.sysctl(l.host, "net/ipv4/conf/all/rp_filter", "0")
	l.sysctl(l.host, "net/ipv4/conf/up0/rp_filter", "0")
	// An address of the internal subnet on the neighbour: a spoofed source.
	l.ip(l.prefix+"-o", "addr", "add", "198.18.3.50/32", "dev", "eth0")

	for _, c := range []*ctr{a1, a2, b1, i1, m1} {
		l.serve(c.ns, 80)
	}
	l.serve(l.out, 80)
	sinkI := l.listenUDP(i1.ns, ":53")
	sinkA := l.listenUDP(a1.ns, ":53")
	out4, out6 := addr("192.0.2.2"), addr("2001:db8:1::2")
	host4, host6 := addr("192.0.2.1"), addr("2001:db8:1::1")

	l.do(l.fw.EnsureBase)
	for _, n := range []Network{netA, netB, netI, netM} {
		l.do(func() error { return l.fw.AddNetwork(n) })
	}
	l.do(func() error {
		return l.fw.AddPorts(netA, []state.PortBinding{
			{Proto: "tcp", HostPort: 8080, ContainerIP: a1.ip4, ContainerPort: 80},
			{Proto: "tcp", HostPort: 8080, ContainerIP: a1.ip6, ContainerPort: 80},
		})
	})
	l.policy("ACCEPT")

	// No container of any kind is reached from outside, IPv4 or IPv6.
	var probes []probe
	for _, to := range []struct {
		what string
		c    *ctr
	}{
		{"ICC-on container", a2},
		{"published container's address (no DNAT)", a1},
		{"ICC-off container", b1},
		{"no-masquerade container", m1},
		{"internal container", i1},
	} {
		probes = append(probes,
			probe{"outside -> " + to.what + " v4", l.out, hp(to.c.ip4, 80), ""},
			probe{"outside -> " + to.what + " v6", l.out, hp(to.c.ip6, 80), ""})
	}
	l.check(append(probes,
		// What must keep working.
		probe{"outside -> published port v4", l.out, hp(host4, 8080), out4.String()},
		probe{"outside -> published port v6", l.out, hp(host6, 8080), out6.String()},
		probe{"container -> outside v4", a2.ns, hp(out4, 80), host4.String()},
		probe{"container -> outside v6", a2.ns, hp(out6, 80), host6.String()},
		probe{"no-masquerade container -> outside (routed back)", m1.ns, hp(out4, 80), m1.ip4.String()},
		probe{"ICC v4", a2.ns, hp(a1.ip4, 80), a2.ip4.String()},
		probe{"ICC v6", a2.ns, hp(a1.ip6, 80), a2.ip6.String()},
		probe{"internal ICC", i2.ns, hp(i1.ip4, 80), i2.ip4.String()},
		probe{"host -> container", l.host, hp(a1.ip4, 80), "198.18.1.1"},
	)...)
	// One-way datagrams need no answer: a spoofed source in the internal
	// subnet, and a plain one to a container's address.
	if err := sendUDPFrom(l.out, "198.18.3.50:5353", hp(i1.ip4, 53), "spoofed"); err != nil {
		t.Fatal(err)
	}
	if err := sendUDPFrom(l.out, "192.0.2.2:5353", hp(a1.ip4, 53), "plain"); err != nil {
		t.Fatal(err)
	}
	if sinkI.saw("spoofed") {
		t.Error("a datagram from outside with a source address of the internal subnet reached the internal container")
	}
	if sinkA.saw("plain") {
		t.Error("a datagram from outside reached a container directly")
	}
}

// TestLoopbackGuard: route_localnet on a bridge (what makes 127.0.0.1 ports
// work) must not let a container reach what the host binds to its loopback
// by sending packets to 127.0.0.1 through its gateway.
func TestLoopbackGuard(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "e10000000000ffff", Bridge: "myl0", ICC: true, Masquerade: true}, "198.18.7.1/24", "")
	c := l.addContainer("c1", "myl0", "198.18.7.2/24", "198.18.7.1", "", "")
	l.serve(c.ns, 80)
	l.do(l.fw.EnsureBase)
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error {
		return l.fw.AddPorts(n, []state.PortBinding{{Proto: "tcp", HostIP: addr("127.0.0.1"), HostPort: 8080, ContainerIP: c.ip4, ContainerPort: 80}})
	})
	l.policy("ACCEPT")
	var gwMAC net.HardwareAddr
	l.do(func() error {
		ifi, err := net.InterfaceByName("myl0")
		if err == nil {
			gwMAC = ifi.HardwareAddr
		}
		return err
	})
	loopback := l.listenUDP(l.host, "127.0.0.1:9999")
	loopback2 := l.listenUDP(l.host, "127.0.0.2:9999")
	gateway := l.listenUDP(l.host, "198.18.7.1:9998")
	from := netip.AddrPortFrom(c.ip4, 4000)

	// Control: the crafted packet does reach the host when addressed to it.
	if err := sendRawUDP(c.ns, "eth0", gwMAC, from, netip.MustParseAddrPort("198.18.7.1:9998"), "to-gateway"); err != nil {
		t.Fatal(err)
	}
	if !gateway.saw("to-gateway") {
		t.Fatal("control: a crafted datagram to the gateway address did not arrive")
	}
	for _, dst := range []string{"127.0.0.1:9999", "127.0.0.2:9999"} {
		if err := sendRawUDP(c.ns, "eth0", gwMAC, from, netip.MustParseAddrPort(dst), "to-"+dst); err != nil {
			t.Fatal(err)
		}
	}
	if loopback.saw("to-127.0.0.1:9999") {
		t.Error("a container reached a socket bound to the host's 127.0.0.1 by sending to 127.0.0.1 through its gateway")
	}
	if loopback2.saw("to-127.0.0.2:9999") {
		t.Error("a container reached the host's loopback through 127.0.0.2")
	}
	l.check(probe{"host 127.0.0.1:8080 (published on the loopback)", l.host, "127.0.0.1:8080", "198.18.7.1"})
}
