//go:build linux

package ports

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/state"
)

// Kernel tests of the proxy on the held IPv6 socket, in a namespace of
// their own: the "container" is a server on the namespace's loopback.

// echoTCP serves "<tag> <line>" for each line on addr until the test ends.
func echoTCP(t *testing.T, network, addr, tag string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen(network, addr)
	keep(t, ln, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s\n", tag, sc.Text())
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// echoUDP answers "<tag> <datagram>" to each datagram on addr until the
// test ends.
func echoUDP(t *testing.T, network, addr, tag string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	keep(t, pc, err)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(tag+" "+string(buf[:n])), from)
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func askTCP(addr netip.AddrPort, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(got), err
}

func askUDP(addr netip.AddrPort, msg string) (string, error) {
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for i := 0; i < 5; i++ {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("no answer from udp %s", addr)
}

func TestProxyIPv6Side(t *testing.T) {
	testutil.InNetns(t, func() {
		if !hasIPv6() {
			t.Error("no IPv6 in the test namespace")
			return
		}
		v4tcp := echoTCP(t, "tcp4", "127.0.0.1:0", "v4")
		v6tcp := echoTCP(t, "tcp6", "[::1]:0", "v6")
		v4udp := echoUDP(t, "udp4", "127.0.0.1:0", "v4")
		v6udp := echoUDP(t, "udp6", "[::1]:0", "v6")
		lo6 := netip.IPv6Loopback()
		r := newReserver(40000, 40100)

		// IPv4-only container, every address: [::1] reaches its IPv4 address.
		// Dual-stack: its IPv6 address. An explicit IPv6 host address of an
		// IPv4-only container: its IPv4 address.
		cases := []struct {
			name     string
			reserve  func(ms []Mapping) ([]state.PortBinding, error)
			hostIP   netip.Addr
			wantTag  string
			wantUDP6 bool
		}{
			{"ipv4-only all addresses", func(ms []Mapping) ([]state.PortBinding, error) { return r.Reserve(lo4, ms) }, netip.Addr{}, "v4", false},
			{"dual-stack all addresses", func(ms []Mapping) ([]state.PortBinding, error) { return r.ReserveDualStack(lo4, lo6, ms) }, netip.Addr{}, "v6", true},
			{"ipv4-only on ::1", func(ms []Mapping) ([]state.PortBinding, error) { return r.Reserve(lo4, ms) }, lo6, "v4", false},
		}
		for i, c := range cases {
			tcpT, udpT := v4tcp, v4udp
			if c.wantUDP6 {
				tcpT, udpT = v6tcp, v6udp
			}
			hp := uint16(41000 + 10*i)
			bs, err := c.reserve([]Mapping{
				{Proto: TCP, HostIP: c.hostIP, HostPort: hp, ContainerPort: tcpT.Port()},
				{Proto: UDP, HostIP: c.hostIP, HostPort: hp + 1, ContainerPort: udpT.Port()},
			})
			if err != nil {
				t.Errorf("%s: reserve: %v", c.name, err)
				continue
			}
			at := netip.AddrPortFrom(lo6, hp)
			if got, err := askTCP(at, "hello"); err != nil || got != c.wantTag+" hello" {
				t.Errorf("%s: tcp %s: got %q, %v; want %q", c.name, at, got, err, c.wantTag+" hello")
			}
			at = netip.AddrPortFrom(lo6, hp+1)
			if got, err := askUDP(at, "ping"); err != nil || got != c.wantTag+" ping" {
				t.Errorf("%s: udp %s: got %q, %v; want %q", c.name, at, got, err, c.wantTag+" ping")
			}
			if !c.hostIP.IsValid() {
				// The IPv4 side is the DNAT rules' (none here): the IPv4
				// socket holds and never answers.
				c4, err := net.DialTimeout("tcp", netip.AddrPortFrom(lo4, hp).String(), time.Second)
				if err == nil {
					c4.SetDeadline(time.Now().Add(300 * time.Millisecond))
					fmt.Fprintf(c4, "x\n")
					if b, err := bufio.NewReader(c4).ReadString('\n'); err == nil {
						t.Errorf("%s: the IPv4 holding socket answered %q", c.name, b)
					}
					c4.Close()
				}
			}
			r.Release(bs)
			if got, err := askTCP(netip.AddrPortFrom(lo6, hp), "again"); err == nil {
				t.Errorf("%s: released, but [::1]:%d still answers %q", c.name, hp, got)
			}
			if ln, err := net.Listen("tcp6", netip.AddrPortFrom(lo6, hp).String()); err != nil {
				t.Errorf("%s: released, but [::1]:%d cannot be bound: %v", c.name, hp, err)
			} else {
				ln.Close()
			}
		}
		if n := Proxied.ActiveConns.Load(); n != 0 {
			t.Errorf("%d proxied connections or flows still open after every release", n)
		}
	})
}
