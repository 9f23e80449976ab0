//go:build integration

package integration

// The bridge backend end to end: reachability and isolation, multi-homed
// containers, connect/disconnect, --internal, ICC off, MTU, IPv6, option
// errors, given bridges, gateways and address ranges, overlaps,
// outbound NAT seen from an outside namespace (which has no route to
// container subnets, so what it sees proves whether the host masqueraded),
// and "nothing is left behind" after every test.

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Same network: by IP and by name, both ways. Two mynet networks: isolated
// both ways. mynet and Docker's bridge: isolated both ways.
func TestBridgeReachAndIsolation(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		sfx := fmt.Sprint(i)
		a, b := netPair(t, lc, ipam, "mit-reach", i, 81)
		d := "mit-reach-d" + sfx
		lc.net(d, "-d", "bridge", "--subnet", freeV4Subnet(t, 83).String())
		a1, a2, b1, d1 := "mit-reach-a1-"+sfx, "mit-reach-a2-"+sfx, "mit-reach-b1-"+sfx, "mit-reach-d1-"+sfx
		runContainer(t, a1, "--network", a)
		runContainer(t, a2, "--network", a)
		runContainer(t, b1, "--network", b)
		runContainer(t, d1, "--network", d)
		ipA1, ipA2 := containerIP(t, a1, a), containerIP(t, a2, a)
		ipB1, ipD1 := containerIP(t, b1, b), containerIP(t, d1, d)

		// No docker_gwbridge: the container has exactly lo and eth0.
		if out := mustDockerExec(t, a1, "ls", "/sys/class/net"); strings.Join(strings.Fields(out), " ") != "eth0 lo" {
			t.Errorf("%s has interfaces %q, want eth0 and lo only", a1, out)
		}
		for _, c := range []struct{ from, name string }{{a1, a2}, {a2, a1}} {
			if err := pingName(c.from, c.name); err != nil {
				t.Error(err)
			}
		}
		for _, c := range []struct {
			from string
			to   netip.Addr
		}{{a1, ipA2}, {a2, ipA1}} {
			expectPing(t, "same mynet network", c.from, c.to)
		}
		// The peers on the other side must be alive and reachable on
		// their own networks for the negative checks to mean something.
		for _, c := range []struct {
			from string
			gw   string
		}{{b1, b}, {d1, d}} {
			expectPing(t, "control", c.from, netip.MustParseAddr(containerNet(t, c.from, c.gw).Gateway))
		}
		for _, c := range []struct {
			what, from string
			to         netip.Addr
		}{
			{"mynet A -> mynet B", a1, ipB1},
			{"mynet B -> mynet A", b1, ipA1},
			{"mynet A -> docker bridge", a1, ipD1},
			{"docker bridge -> mynet A", d1, ipA1},
		} {
			if err := noPing(c.from, c.to); err != nil {
				t.Errorf("%s must be isolated: %v", c.what, err)
			}
		}
	})
}

// A container on two mynet networks from its start.
func TestBridgeTwoNetworks(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		sfx := fmt.Sprint(i)
		a, b := netPair(t, lc, ipam, "mit-two", i, 92)
		both, pa, pb := "mit-two-both-"+sfx, "mit-two-pa-"+sfx, "mit-two-pb-"+sfx
		t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", both) })
		mustDocker(t, "create", "--name", both, "--network", a, testImage, "sleep", "3600")
		mustDocker(t, "network", "connect", b, both)
		mustDocker(t, "start", both)
		runContainer(t, pa, "--network", a)
		runContainer(t, pb, "--network", b)
		ipA, ipB := containerIP(t, both, a), containerIP(t, both, b)
		if o := mustDockerExec(t, both, "ip", "-o", "-4", "addr"); !strings.Contains(o, ipA.String()+"/") || !strings.Contains(o, ipB.String()+"/") {
			t.Errorf("%s should have %s and %s:\n%s", both, ipA, ipB, o)
		}
		for _, c := range []struct {
			from string
			to   netip.Addr
		}{{both, containerIP(t, pa, a)}, {both, containerIP(t, pb, b)}, {pa, ipA}, {pb, ipB}} {
			expectPing(t, "", c.from, c.to)
		}
		// The two-legged container does not join the networks.
		expectNoPing(t, "a -> b through nothing", pa, containerIP(t, pb, b))
	})
}

// docker network connect / disconnect of a running container.
func TestBridgeConnectDisconnect(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		sfx := fmt.Sprint(i)
		a, b := netPair(t, lc, ipam, "mit-conn", i, 90)
		c1, c2, c3 := "mit-conn-1-"+sfx, "mit-conn-2-"+sfx, "mit-conn-3-"+sfx
		runContainer(t, c1, "--network", a)
		runContainer(t, c2, "--network", a)
		runContainer(t, c3, "--network", b)
		ip2, ip3 := containerIP(t, c2, a), containerIP(t, c3, b)

		mustDocker(t, "network", "connect", b, c1)
		epB := containerNet(t, c1, b)
		ip1b := netip.MustParseAddr(epB.IPAddress)
		if o := mustDockerExec(t, c1, "ip", "-o", "-4", "addr", "show", "dev", "eth1"); !strings.Contains(o, ip1b.String()+"/") {
			t.Errorf("after connect, eth1 of %s lacks %s:\n%s", c1, ip1b, o)
		}
		expectPing(t, "after connect, to the new network", c1, ip3)
		expectPing(t, "after connect, from the new network", c3, ip1b)
		expectPing(t, "after connect, to the first network", c1, ip2)
		if err := pingName(c3, c1); err != nil {
			t.Errorf("after connect, by name: %v", err)
		}

		mustDocker(t, "network", "disconnect", b, c1)
		if o, err := dockerExec(c1, "ip", "-o", "addr"); err != nil || strings.Contains(o, ip1b.String()+"/") || strings.Contains(o, "eth1") {
			t.Errorf("after disconnect, %s still has eth1/%s (%v):\n%s", c1, ip1b, err, o)
		}
		// The veth may go in the background (async teardown), soon after.
		host := "mnh" + epB.EndpointID[:12]
		if err := eventually(5*time.Second, func() error {
			if linkExists(host) {
				return fmt.Errorf("host veth %s still exists", host)
			}
			return nil
		}); err != nil {
			t.Errorf("after disconnect: %v", err)
		}
		expectPing(t, "after disconnect, first network", c1, ip2)
		expectNoPing(t, "after disconnect, the old network must be unreachable", c1, ip3)
	})
}

// --internal: own subnet only; neither another network nor an outside
// namespace (which has a route back to the internal subnet, so only the
// firewall can stop the traffic).
func TestBridgeInternal(t *testing.T) {
	lc := bridgeTest(t)
	out := newOutside(t)
	srv := out.serveTCP(t)

	subI := freeV4Subnet(t, 84)
	subN := freeV4Subnet(t, 85)
	lc.net("mit-int-i", "-d", pluginName, "--internal", "--subnet", subI.String())
	lc.net("mit-int-n", "-d", pluginName, "--subnet", subN.String())
	runContainer(t, "mit-int-i1", "--network", "mit-int-i", "--cap-add", "NET_ADMIN")
	runContainer(t, "mit-int-i2", "--network", "mit-int-i")
	runContainer(t, "mit-int-n1", "--network", "mit-int-n")
	ipI1, ipI2 := containerIP(t, "mit-int-i1", "mit-int-i"), containerIP(t, "mit-int-i2", "mit-int-i")
	ipN1 := containerIP(t, "mit-int-n1", "mit-int-n")
	gwI := netip.MustParseAddr(containerNet(t, "mit-int-i1", "mit-int-i").Gateway)

	expectPing(t, "internal network, own subnet", "mit-int-i1", ipI2)
	expectPing(t, "internal network, own subnet", "mit-int-i2", ipI1)
	// Docker gives an internal network no default route; give the container
	// routes through the gateway so that packets reach the host's firewall.
	for _, p := range []netip.Prefix{subN, out.prefix} {
		if o, err := dockerExec("mit-int-i1", "ip", "route", "add", p.String(), "via", gwI.String()); err != nil && !strings.Contains(o, "exists") {
			t.Fatalf("route %s via %s in mit-int-i1: %v\n%s", p, gwI, err, o)
		}
	}
	out.addRoute(t, subI)
	out.addRoute(t, subN)

	// Controls: the other network and the outside listener work.
	expectPing(t, "control", "mit-int-n1", netip.MustParseAddr(containerNet(t, "mit-int-n1", "mit-int-n").Gateway))
	if err := srv.expectFrom("mit-int-n1", out.hostAddr, 10*time.Second); err != nil {
		t.Errorf("control: a normal mynet container cannot reach the outside namespace: %v", err)
	}

	expectNoPing(t, "internal -> other network", "mit-int-i1", ipN1)
	expectNoPing(t, "other network -> internal", "mit-int-n1", ipI1)
	if err := srv.expectNoConnFrom(t, "mit-int-i1"); err != nil {
		t.Errorf("internal -> outside namespace: %v", err)
	}
	if o, err := out.exec("busybox", "ping", "-c", "2", "-w", "3", ipI1.String()); err == nil {
		t.Errorf("outside namespace -> internal container %s answered, must not:\n%s", ipI1, o)
	}
}

// enable_icc=false: containers do not reach each other; the gateway answers.
func TestBridgeICCOff(t *testing.T) {
	lc := bridgeTest(t)
	lc.net("mit-icc", mynetNetArgs([]string{"--ipam-driver", pluginName}, "--subnet", freeV4Subnet(t, 86).String(),
		"-o", "com.docker.network.bridge.enable_icc=false")...)
	port, token := runPublishedWebServer(t, "mit-icc-1", "", "--network", "mit-icc")
	runContainer(t, "mit-icc-2", "--network", "mit-icc")
	ip1, ip2 := containerIP(t, "mit-icc-1", "mit-icc"), containerIP(t, "mit-icc-2", "mit-icc")
	gw := netip.MustParseAddr(containerNet(t, "mit-icc-1", "mit-icc").Gateway)
	for _, c := range []string{"mit-icc-1", "mit-icc-2"} {
		expectPing(t, "gateway with ICC off", c, gw)
	}
	expectNoPing(t, "ICC off", "mit-icc-1", ip2)
	expectNoPing(t, "ICC off", "mit-icc-2", ip1)
	// A published port stays reachable through the host address (like
	// Docker's bridge with ICC off); the container's own address does not.
	host := hostIPv4(t)
	if err := httpGetHas(netip.AddrPortFrom(host, uint16(port)), token, 10*time.Second); err != nil {
		t.Errorf("control, from the host: %v", err)
	}
	if err := fetchFromHas("mit-icc-2", host, port, token); err != nil {
		t.Errorf("ICC off, published port through the host address: %v", err)
	}
	if out, err := fetchFrom("mit-icc-2", ip1, 80); err == nil || strings.Contains(out, token) {
		t.Errorf("ICC off, but mit-icc-2 reached %s:80 directly (%v): %q", ip1, err, out)
	}
}

// MTU (long key and the short alias) inside the container, on the host veth
// and on the bridge; container_iface_prefix names the interface.
func TestBridgeMTU(t *testing.T) {
	for i, c := range []struct {
		opt, ifname string
		mtu         int
	}{
		{"com.docker.network.driver.mtu=1400", "eth0", 1400},
		{"mtu=1380", "eth0", 1380},
	} {
		t.Run(strings.SplitN(c.opt, "=", 2)[0], func(t *testing.T) {
			lc := bridgeTest(t)
			name := fmt.Sprintf("mit-mtu-%d", i)
			ctr := name + "-c"
			ipam := ipamSetups[i%2].args
			n := lc.net(name, mynetNetArgs(ipam, "--subnet", freeV4Subnet(t, 87).String(), "-o", c.opt)...)
			runContainer(t, ctr, "--network", name)
			want := fmt.Sprint(c.mtu)
			if got := mustDockerExec(t, ctr, "cat", "/sys/class/net/"+c.ifname+"/mtu"); got != want {
				t.Errorf("MTU of %s in the container = %s, want %s", c.ifname, got, want)
			}
			ep := containerNet(t, ctr, name)
			for _, l := range []string{mynetBridge(n), "mnh" + ep.EndpointID[:12]} {
				b, err := os.ReadFile(filepath.Join("/sys/class/net", l, "mtu"))
				if got := strings.TrimSpace(string(b)); err != nil || got != want {
					t.Errorf("MTU of host link %s = %q (%v), want %s", l, got, err, want)
				}
			}
		})
	}
}

func TestBridgeIfacePrefix(t *testing.T) {
	lc := bridgeTest(t)
	lc.net("mit-ifp", mynetNetArgs(nil, "--subnet", freeV4Subnet(t, 87).String(), "-o", "com.docker.network.container_iface_prefix=lan")...)
	runContainer(t, "mit-ifp-c", "--network", "mit-ifp")
	if out := mustDockerExec(t, "mit-ifp-c", "ls", "/sys/class/net"); strings.Join(strings.Fields(out), " ") != "lan0 lo" {
		t.Errorf("interfaces in the container = %q, want lan0 and lo", out)
	}
}

// Dual stack: IPv6 addresses, ping6 both ways, and IPv6 isolation between
// two networks.
func TestBridgeIPv6(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		sfx := fmt.Sprint(i)
		v6a, v6b := freeV6Subnet(t), freeV6Subnet(t)
		for v6b.Overlaps(v6a) {
			v6b = freeV6Subnet(t)
		}
		a, b := "mit-v6-a"+sfx, "mit-v6-b"+sfx
		lc.net(a, mynetNetArgs(ipam, "--ipv6", "--subnet", freeV4Subnet(t, 88).String(), "--subnet", v6a.String())...)
		lc.net(b, mynetNetArgs(ipam, "--ipv6", "--subnet", freeV4Subnet(t, 89).String(), "--subnet", v6b.String())...)
		c1, c2, c3 := "mit-v6-1-"+sfx, "mit-v6-2-"+sfx, "mit-v6-3-"+sfx
		runContainer(t, c1, "--network", a)
		runContainer(t, c2, "--network", a)
		runContainer(t, c3, "--network", b)
		addr6 := func(ctr, netName string, sub netip.Prefix) netip.Addr {
			ep := containerNet(t, ctr, netName)
			ip, err := netip.ParseAddr(ep.GlobalIPv6Address)
			if err != nil || !sub.Contains(ip) {
				t.Fatalf("%s: IPv6 address %q, want one in %s (%+v)", ctr, ep.GlobalIPv6Address, sub, ep)
			}
			if ep.IPv6Gateway == "" {
				t.Errorf("%s: no IPv6 gateway (%+v)", ctr, ep)
			}
			if o := mustDockerExec(t, ctr, "ip", "-6", "addr", "show", "dev", "eth0"); !strings.Contains(o, ip.String()+"/") {
				t.Errorf("%s: eth0 lacks %s:\n%s", ctr, ip, o)
			}
			return ip
		}
		ip1, ip2, ip3 := addr6(c1, a, v6a), addr6(c2, a, v6a), addr6(c3, b, v6b)
		expectPing(t, "", c1, ip2)
		expectPing(t, "", c2, ip1)
		if gw, err := netip.ParseAddr(containerNet(t, c1, a).IPv6Gateway); err == nil {
			expectPing(t, "IPv6 gateway", c1, gw)
		}
		expectPing(t, "control", c3, netip.MustParseAddr(containerNet(t, c3, b).IPv6Gateway))
		expectNoPing(t, "IPv6 isolation A -> B", c1, ip3)
		expectNoPing(t, "IPv6 isolation B -> A", c3, ip1)
	})
}

// Unknown options and bad values: refused by `docker network create` with a
// message that names the option; nothing is left behind.
func TestBridgeBadOptions(t *testing.T) {
	cases := []struct {
		opt  string
		want []string
	}{
		{"mit_no_such_option=1", []string{"mit_no_such_option", "valid", "com.docker.network.driver.mtu"}},
		{"com.docker.network.driver.mtu=9x", []string{"com.docker.network.driver.mtu", "9x", "68"}},
		{"mtu=10", []string{"mtu", "68"}},
		{"com.docker.network.bridge.enable_icc=maybe", []string{"com.docker.network.bridge.enable_icc", "maybe", "true or false"}},
		{"com.docker.network.bridge.enable_ip_masquerade=2", []string{"com.docker.network.bridge.enable_ip_masquerade"}},
		{"com.docker.network.bridge.host_binding_ipv4=nope", []string{"com.docker.network.bridge.host_binding_ipv4", "IPv4"}},
		{"com.docker.network.bridge.name=this-name-is-far-too-long", []string{"com.docker.network.bridge.name", "15"}},
		{"com.docker.network.container_iface_prefix=e-th", []string{"com.docker.network.container_iface_prefix"}},
		{"backend=bogus", []string{"backend", "bogus", "bridge"}},
	}
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, _ *leakCheck) {
		sub := freeV4Subnet(t, 94)
		for j, c := range cases {
			name := fmt.Sprintf("mit-bad-%d-%d", i, j)
			before := takeSnapshot()
			t.Cleanup(func() { _, _ = dockerCmd("network", "rm", name) })
			out, err := docker(t, append([]string{"network", "create"}, mynetNetArgs(ipam, "--subnet", sub.String(), "-o", c.opt, name)...)...)
			if err == nil {
				t.Errorf("-o %s: docker network create succeeded, want an error", c.opt)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("-o %s: error does not contain %q:\n%s", c.opt, w, out)
				}
			}
			if _, err := dockerCmd("network", "inspect", name); err == nil {
				t.Errorf("-o %s: network %s exists after a failed create", c.opt, name)
			}
			var d []string
			_ = eventually(5*time.Second, func() error {
				d = before.diff(takeSnapshot(), ipam == nil)
				if len(d) > 0 {
					return fmt.Errorf("changed")
				}
				return nil
			})
			for _, x := range d {
				t.Errorf("-o %s: failed create changed the host: %s", c.opt, x)
			}
		}
	})
}

// A bridge given by name: an existing one is used and never deleted; two
// networks cannot share a bridge.
func TestBridgeGivenBridgeName(t *testing.T) {
	lc := bridgeTest(t)
	br := "mitbr" + randHex()
	addLink(t, br, "type", "bridge")
	lc.keepLinks[br] = true

	sub := freeV4Subnet(t, 95)
	n := lc.net("mit-brname-1", "-d", pluginName, "--subnet", sub.String(), "-o", "com.docker.network.bridge.name="+br)
	runContainer(t, "mit-brname-c1", "--network", n.Name)
	runContainer(t, "mit-brname-c2", "--network", n.Name)
	expectPing(t, "on a given bridge", "mit-brname-c1", containerIP(t, "mit-brname-c2", n.Name))
	ep := containerNet(t, "mit-brname-c1", n.Name)
	if b, _ := os.ReadFile("/sys/class/net/mnh" + ep.EndpointID[:12] + "/master/uevent"); !strings.Contains(string(b), "INTERFACE="+br) {
		t.Errorf("host veth of mit-brname-c1 is not on %s: %q", br, b)
	}

	before := takeSnapshot()
	out, err := docker(t, "network", "create", "-d", pluginName, "--subnet", freeV4Subnet(t, 96).String(),
		"-o", "com.docker.network.bridge.name="+br, "mit-brname-2")
	t.Cleanup(func() { _, _ = dockerCmd("network", "rm", "mit-brname-2") })
	if err == nil {
		t.Errorf("a second network on bridge %s was created, want an error", br)
	} else if !strings.Contains(out, br) || !strings.Contains(out, "com.docker.network.bridge.name") {
		t.Errorf("error for a shared bridge does not name the bridge and the option:\n%s", out)
	}
	for _, x := range before.diff(takeSnapshot(), true) {
		t.Errorf("failed create changed the host: %s", x)
	}

	// A given name that does not exist yet: created, and deleted with the network.
	br3 := "mitbn" + randHex()
	lc.net("mit-brname-3", "-d", pluginName, "--subnet", freeV4Subnet(t, 96).String(), "-o", "com.docker.network.bridge.name="+br3)
	if !linkExists(br3) {
		t.Errorf("bridge %s was not created", br3)
	}
	netRemove(t, "mit-brname-3")
	// It may go in the background (async teardown), soon after.
	if err := eventually(5*time.Second, func() error {
		if linkExists(br3) {
			return fmt.Errorf("bridge %s, created for network mit-brname-3, still exists after the network was removed", br3)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	netRemove(t, "mit-brname-1")
	if !linkExists(br) {
		t.Errorf("bridge %s existed before the network and was deleted with it", br)
	}
	addrs, _ := linkAddrs(br)
	for _, a := range addrs {
		if sub.Contains(a.Addr()) {
			t.Errorf("address %s left on %s after the network was removed", a, br)
		}
	}
}

// --gateway, --ip-range, --aux-address, --ip and --mac-address on a mynet
// network: the gateway is on the bridge and is the containers' default
// route; addresses and MACs are the ones asked for (else 02:42:<IPv4>).
func TestBridgeGatewayRangeMAC(t *testing.T) {
	forEachIPAM(t, func(t *testing.T, i int, ipam []string, lc *leakCheck) {
		sub := freeV4Subnet(t, 109)
		gw := nthAddr(sub, 254)
		rng := netip.PrefixFrom(nthAddr(sub, 128), sub.Bits()+1)
		aux := nthAddr(sub, 130)
		fixed := nthAddr(sub, 200)
		name := fmt.Sprintf("mit-gw-%d", i)
		n := lc.net(name, mynetNetArgs(ipam, "--subnet", sub.String(), "--ip-range", rng.String(),
			"--gateway", gw.String(), "--aux-address", "r="+aux.String())...)
		if addrs, err := linkAddrs(mynetBridge(n)); err != nil || !slices.Contains(addrs, netip.PrefixFrom(gw, sub.Bits())) {
			t.Errorf("bridge %s has %v (%v), want %s/%d", mynetBridge(n), addrs, err, gw, sub.Bits())
		}
		const mac = "02:aa:bb:cc:dd:0e"
		c1, c2 := name+"-fixed", name+"-auto"
		runContainer(t, c1, "--network", name, "--ip", fixed.String(), "--mac-address", mac)
		runContainer(t, c2, "--network", name)
		if got := containerIP(t, c1, name); got != fixed {
			t.Errorf("--ip %s: got %s", fixed, got)
		}
		ip2 := containerIP(t, c2, name)
		if !rng.Contains(ip2) || ip2 == aux || ip2 == gw {
			t.Errorf("%s got %s, want one in --ip-range %s other than the aux address %s and the gateway", c2, ip2, rng, aux)
		}
		for _, c := range []string{c1, c2} {
			if r := mustDockerExec(t, c, "ip", "route", "show", "default"); !strings.Contains(r, "via "+gw.String()) {
				t.Errorf("%s default route %q, want via %s", c, r, gw)
			}
			if err := ping(t, c, gw); err != nil {
				t.Errorf("gateway %s: %v", gw, err)
			}
		}
		if got := mustDockerExec(t, c1, "cat", "/sys/class/net/eth0/address"); got != mac {
			t.Errorf("--mac-address %s: eth0 has %s", mac, got)
		}
		b := ip2.As4()
		if want, got := fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]), mustDockerExec(t, c2, "cat", "/sys/class/net/eth0/address"); got != want {
			t.Errorf("default MAC of %s (%s) = %s, want %s", c2, ip2, got, want)
		}
		expectPing(t, "", c2, fixed)
	})
}

// Two mynet networks may not overlap: the second one, on the other IPAM so
// that no IPAM stops it first, is refused by name of the subnet, and leaves
// nothing behind.
func TestBridgeOverlapRefused(t *testing.T) {
	lc := bridgeTest(t)
	sub := freeV4Subnet(t, 112)
	lc.net("mit-ovl-a", "-d", pluginName, "--subnet", sub.String())
	for i, extra := range [][]string{
		{"--ipam-driver", pluginName, "--subnet", sub.String()},
		{"--ipam-driver", pluginName, "--subnet", netip.PrefixFrom(sub.Addr(), sub.Bits()+1).String()},
	} {
		name := fmt.Sprintf("mit-ovl-b%d", i)
		before := takeSnapshot()
		t.Cleanup(func() { _, _ = dockerCmd("network", "rm", name) })
		out, err := docker(t, append(append([]string{"network", "create", "-d", pluginName}, extra...), name)...)
		if err == nil {
			t.Errorf("network %s %v overlapping mit-ovl-a (%s) was created", name, extra, sub)
			continue
		}
		if !strings.Contains(out, "overlap") || !strings.Contains(out, sub.Addr().String()) {
			t.Errorf("overlap error does not say overlap and name the subnet:\n%s", out)
		}
		for _, x := range before.diff(takeSnapshot(), false) {
			t.Errorf("refused overlapping network changed the host: %s", x)
		}
	}
}

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

// forwardPolicy sets the FORWARD policy of iptables and ip6tables for the
// test and puts the previous ones back at cleanup.
func forwardPolicy(t *testing.T, policy string) {
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
	lc := bridgeTest(t)
	forwardPolicy(t, "ACCEPT")
	out := newOutside(t)
	hostV6, _ := out.addV6(t)
	sub4, sub6 := freeV4Subnet(t, 103), freeV6Subnet(t)
	lc.net("mit-direct", "-d", pluginName, "--ipv6", "--subnet", sub4.String(), "--subnet", sub6.String())
	port := freePort(t)
	token := newToken("direct")
	runWebServer(t, "mit-direct-pub", token, "--network", "mit-direct", "-p", fmt.Sprintf("%d:80", port))
	runWebServer(t, "mit-direct-unpub", token, "--network", "mit-direct")
	out.addRoute(t, sub4)
	mustRun(t, "ip", "-n", out.name, "-6", "route", "add", sub6.String(), "via", hostV6.String())

	var o string
	if err := eventually(10*time.Second, func() error {
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
			if err := fetchFromHas("mit-direct-unpub", ip, 80, token); err != nil {
				t.Errorf("control, from the same network to %s: %v", ip, err)
			}
			if c, err := out.dial(netip.AddrPortFrom(ip, 80), 2*time.Second); err == nil {
				c.Close()
				t.Errorf("the outside namespace opened a connection to %s:80 (%s) directly", ip, ctr)
			}
		}
	}
}
