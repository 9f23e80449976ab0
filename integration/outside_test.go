//go:build integration

package integration

// Outbound traffic of our bridge networks, seen from an outside namespace
// (netns_test.go) that has no route to container subnets: what it sees
// proves whether the host masqueraded.

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Outbound NAT: a container reaches the outside namespace, which sees the
// host's /30 address (it has no route to the container subnet at all).
func TestBridgeOutsideNAT(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		out := newOutside(t)
		srv := out.serveTCP(t)
		name := fmt.Sprintf("mit-nat-%d", i)
		lc.net(name, mynetNetArgs(ipam, "--subnet", freeV4Subnet(t, 97).String())...)
		runContainer(t, name+"-c", "--network", name)
		if err := srv.expectFrom(name+"-c", out.hostAddr, 10*time.Second); err != nil {
			t.Error(err)
		}
	})
}

// enable_ip_masquerade=false: the outside cannot answer (no NAT, no route
// back); once the outside gets a route to the subnet, it sees the
// container's own address.
func TestBridgeOutsideNoMasquerade(t *testing.T) {
	lc := bridgeTest(t)
	out := newOutside(t)
	srv := out.serveTCP(t)
	sub := freeV4Subnet(t, 98)
	lc.net("mit-nomasq", "-d", pluginName, "--subnet", sub.String(), "-o", "com.docker.network.bridge.enable_ip_masquerade=false")
	runContainer(t, "mit-nomasq-c", "--network", "mit-nomasq")
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
	lc := bridgeTest(t)
	out := newOutside(t)
	hostV6, nsV6 := out.addV6(t)
	srv := out.serveTCPOn(t, nsV6)
	lc.net("mit-nat6", "-d", pluginName, "--ipv6", "--subnet", freeV4Subnet(t, 99).String(), "--subnet", freeV6Subnet(t).String())
	runContainer(t, "mit-nat6-c", "--network", "mit-nat6")
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
