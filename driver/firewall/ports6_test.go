package firewall

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/mynet/mynet/state"
)

// The IPv6 side of published ports: a dual-stack binding on every address is
// an ip6tables DNAT rule too (the container sees the client's address), ::1
// is left to the host port's holding socket (the OUTPUT jump skips it), and an
// IPv6 host address of an IPv4 container is no rule at all (proxied).
func TestPublishedPortsIPv6(t *testing.T) {
	l := newLab(t)
	gw6 := addr("fd00:61::1")
	netA := Network{ID: "f60000000000ffff", Bridge: "my60", ICC: true, Masquerade: true,
		Subnets: l.addBridge("my60", "198.18.61.1/24", "fd00:61::1/64")}
	a1 := l.addContainer("s1", "my60", "198.18.61.2/24", "198.18.61.1", "fd00:61::2/64", "fd00:61::1")
	a2 := l.addContainer("s2", "my60", "198.18.61.3/24", "198.18.61.1", "fd00:61::3/64", "fd00:61::1")
	l.serve(a1.ns, 80)
	out4, out6 := addr("192.0.2.2"), addr("2001:db8:1::2")
	host4, host6 := addr("192.0.2.1"), addr("2001:db8:1::1")

	// Stand-in for the holding socket's proxy on [::1]: answers with the peer.
	var ln net.Listener
	l.do(func() (err error) { ln, err = net.Listen("tcp6", "[::1]:8090"); return })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })

	l.do(l.fw.EnsureBase)
	l.do(func() error { return l.fw.AddNetwork(netA) })
	l.policy("DROP")
	dual := []state.PortBinding{
		{Proto: "tcp", HostPort: 8090, ContainerIP: a1.ip4, ContainerIPv6: a1.ip6, ContainerPort: 80},
		{Proto: "udp", HostPort: 8090, ContainerIP: a1.ip4, ContainerIPv6: a1.ip6, ContainerPort: 80},
		{Proto: "tcp", HostIP: host6, HostPort: 8091, ContainerIP: a1.ip4, ContainerPort: 80}, // proxied: no rule
	}
	l.do(func() error { return l.fw.AddPorts(netA, dual) })
	l.ip(l.hostN, "link", "set", a1.port, "type", "bridge_slave", "hairpin", "on")

	save6 := l.save(v6)
	for _, want := range []string{
		"-A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -m comment --comment mynet -j MYNET-DNAT",
		"-A MYNET-DNAT -p tcp -m tcp --dport 8090 -m comment --comment \"mynet:f60000000000\" -j DNAT --to-destination [fd00:61::2]:80",
		"-A MYNET-DNAT -p udp -m udp --dport 8090 -m comment --comment \"mynet:f60000000000\" -j DNAT --to-destination [fd00:61::2]:80",
	} {
		if !strings.Contains(save6, want) {
			t.Errorf("ip6tables lacks %q:\n%s", want, save6)
		}
	}
	if strings.Contains(save6+l.save(v4), "8091") {
		t.Errorf("a proxied binding (IPv6 host address, IPv4 container) got a rule")
	}

	l.check(
		probe{"outside -> [host]:8090, real source", l.out, hp(host6, 8090), out6.String()},
		probe{"outside -> host:8090", l.out, hp(host4, 8090), out4.String()},
		probe{"host -> [own address]:8090", l.host, hp(host6, 8090), host6.String()},
		probe{"hairpin v6 from a2", a2.ns, hp(host6, 8090), gw6.String()},
		probe{"self hairpin v6", a1.ns, hp(host6, 8090), gw6.String()},
		probe{"[::1]:8090 is the holding socket's, not DNAT's", l.host, "[::1]:8090", "::1"},
		probe{"outside direct to the container's IPv6, no DNAT", l.out, hp(a1.ip6, 80), ""},
	)

	// Read back as one binding per rule; removal takes the record as stored.
	var pub map[string][]state.PortBinding
	l.do(func() (err error) { pub, err = l.fw.PublishedPorts(); return })
	var n6 int
	for _, b := range pub["f60000000000"] {
		if b.ContainerIP == a1.ip6 && !b.HostIP.IsValid() && !b.ContainerIPv6.IsValid() {
			n6++
		}
	}
	if len(pub["f60000000000"]) != 4 || n6 != 2 {
		t.Errorf("PublishedPorts = %v, want 4 bindings, 2 of them IPv6 to %s", pub["f60000000000"], a1.ip6)
	}
	l.do(func() error { return l.fw.RemovePorts(netA, dual) })
	if s := l.save(v4) + l.save(v6); strings.Contains(s, "--dport 8090") {
		t.Errorf("rules left after RemovePorts:\n%s", s)
	}
	l.check(probe{"removed v6 port", l.out, hp(host6, 8090), ""})
}
