package firewall

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mynet/mynet/state"
)

// Docker 28's gateway modes and trusted host interfaces, from the outside
// (which has routes to the container subnets through the host, as a router
// would): what reaches a container's own address, what is masqueraded.
func TestGatewayModesAndTrustedInterfaces(t *testing.T) {
	l := newLab(t)
	netN := l.addNetwork(Network{ID: "a10000000000", Bridge: "myn0", ICC: true, Masquerade: true}, "198.18.11.1/24", "")
	netU := l.addNetwork(Network{ID: "b10000000000", Bridge: "myu0", ICC: true, Masquerade: true, GatewayModeV4: GatewayNATUnprotected}, "198.18.12.1/24", "")
	netR := l.addNetwork(Network{ID: "c10000000000", Bridge: "myr0", ICC: true, Masquerade: true, GatewayModeV4: GatewayRouted,
		GatewayModeV6: GatewayRouted}, "198.18.13.1/24", "fd00:13::1/64")
	netT := l.addNetwork(Network{ID: "d10000000000", Bridge: "myt0", ICC: true, Masquerade: true, TrustedIfs: []string{"up0"}},
		"198.18.14.1/24", "")
	l.addBridge("docker0", "198.18.9.1/24", "")

	n1 := l.addContainer("n1", "myn0", "198.18.11.2/24", "198.18.11.1", "", "")
	u1 := l.addContainer("u1", "myu0", "198.18.12.2/24", "198.18.12.1", "", "")
	r1 := l.addContainer("r1", "myr0", "198.18.13.2/24", "198.18.13.1", "fd00:13::2/64", "fd00:13::1")
	t1 := l.addContainer("t1", "myt0", "198.18.14.2/24", "198.18.14.1", "", "")
	d1 := l.addContainer("d1", "docker0", "198.18.9.2/24", "198.18.9.1", "", "")
	l.routeOutsideViaHost()
	for _, c := range []*ctr{n1, u1, r1, t1} {
		l.serve(c.ns, 80)
		l.serve(c.ns, 81)
	}
	l.serve(l.out, 80)
	out4, out6, host4 := addr("192.0.2.2"), addr("2001:db8:1::2"), addr("192.0.2.1")

	l.do(l.fw.EnsureBase)
	for _, n := range []Network{netN, netU, netR, netT} {
		l.do(func() error { return l.fw.AddNetwork(n) })
	}
	// FORWARD's policy at ACCEPT, as Docker 28 leaves it when forwarding was
	// already on: only our rules protect the containers.
	l.policy("ACCEPT")

	// Published: routed opens the container port itself (no host port);
	// the trusted network publishes a host port as usual.
	portsR := []state.PortBinding{
		{Proto: "tcp", ContainerIP: r1.ip4, ContainerPort: 80},
		{Proto: "tcp", ContainerIP: r1.ip6, ContainerPort: 80},
	}
	portsT := []state.PortBinding{{Proto: "tcp", HostPort: 8084, ContainerIP: t1.ip4, ContainerPort: 80}}
	l.do(func() error { return l.fw.AddPorts(netR, portsR) })
	l.do(func() error { return l.fw.AddPorts(netT, portsT) })

	l.check(
		probe{"nat: outside -> container address", l.out, hp(n1.ip4, 80), ""},
		probe{"nat: outbound masqueraded", n1.ns, hp(out4, 80), host4.String()},
		probe{"nat-unprotected: outside -> container address", l.out, hp(u1.ip4, 81), out4.String()},
		probe{"nat-unprotected: outbound masqueraded", u1.ns, hp(out4, 80), host4.String()},
		probe{"nat-unprotected: other mynet network still isolated", n1.ns, hp(u1.ip4, 80), ""},
		probe{"nat-unprotected: Docker's bridge still isolated", d1.ns, hp(u1.ip4, 80), ""},
		probe{"routed: outbound not masqueraded", r1.ns, hp(out4, 80), r1.ip4.String()},
		probe{"routed v6: outbound not masqueraded", r1.ns, hp(out6, 80), r1.ip6.String()},
		probe{"routed: published container port", l.out, hp(r1.ip4, 80), out4.String()},
		probe{"routed v6: published container port", l.out, hp(r1.ip6, 80), out6.String()},
		probe{"routed: unpublished port", l.out, hp(r1.ip4, 81), ""},
		probe{"routed: other mynet network isolated", n1.ns, hp(r1.ip4, 80), ""},
		probe{"trusted: host port", l.out, hp(host4, 8084), out4.String()},
		probe{"trusted: published port at the container address", l.out, hp(t1.ip4, 80), out4.String()},
		probe{"trusted: unpublished port at the container address", l.out, hp(t1.ip4, 81), ""},
		probe{"trusted: Docker's bridge still isolated", d1.ns, hp(t1.ip4, 80), ""},
	)
	if s := l.save(v4); !strings.Contains(s, "-o myr0 -p icmp") {
		t.Errorf("routed network: no ICMP accept rule:\n%s", s)
	}
	if s := l.save(v6); !strings.Contains(s, "-o myr0 -p ipv6-icmp") {
		t.Errorf("routed network: no ICMPv6 accept rule:\n%s", s)
	}

	// A routed binding without a container port, or a host-port-less one
	// on a nat network, is refused.
	err := l.hostDo(func() error {
		return l.fw.AddPorts(netN, []state.PortBinding{{Proto: "tcp", ContainerIP: n1.ip4, ContainerPort: 80}})
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("nat network, host port 0: got %v, want ErrInvalid", err)
	}

	var owned []OwnedNetwork
	l.do(func() (err error) { owned, err = l.fw.OwnedNetworks(); return })
	want := []OwnedNetwork{{"a10000000000", "myn0", ""}, {"c10000000000", "myr0", ""}, {"d10000000000", "myt0", ""}, {"b10000000000", "myu0", ""}}
	if !slices.Equal(owned, want) {
		t.Errorf("OwnedNetworks = %v, want %v (a trusted interface is no bridge of ours)", owned, want)
	}

	l.do(func() error { return l.fw.RemovePorts(netR, portsR) })
	l.do(func() error { return l.fw.RemovePorts(netT, portsT) })
	l.check(
		probe{"routed: port removed", l.out, hp(r1.ip4, 80), ""},
		probe{"trusted: port removed", l.out, hp(t1.ip4, 80), ""},
	)
	l.do(func() error { return l.fw.AddPorts(netR, portsR) })
	for _, n := range []Network{netN, netU, netR, netT} {
		l.do(func() error { return l.fw.RemoveNetwork(n) })
	}
	for _, fam := range []family{v4, v6} {
		if s := l.save(fam); strings.Contains(s, "mynet:") {
			t.Errorf("%s rules of removed networks left:\n%s", fam, s)
		}
	}
}
