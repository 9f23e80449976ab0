//go:build integration

package integration

// The bridge options Docker 28 added (gateway modes, inhibit_ipv4, trusted
// host interfaces, endpoint driver options, IPv6-only networks) and living
// beside Docker 28's firewall layout (DOCKER-FORWARD, raw-table drops). They
// run against every engine the suite runs on; what only Docker 28 does
// (GwAllocCheck, --ipv4=false, endpoint sysctls, its chains) is checked
// where the engine is 28 or later.

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// engineMajor is the major version of the engine under test.
func engineMajor(t *testing.T) int {
	t.Helper()
	v := mustDocker(t, "version", "--format", "{{.Server.Version}}")
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if err != nil {
		t.Fatalf("engine version %q: %v", v, err)
	}
	return major
}

// outsideGetHas retries an HTTP GET from the outside namespace until the
// answer contains want.
func (o *outsideNS) getHas(addr netip.AddrPort, want string, d time.Duration) error {
	return getHasVia(o.httpGet, "the outside namespace", addr, want, d)
}

// noGet checks that the outside namespace can NOT get token from addr.
func (o *outsideNS) noGet(addr netip.AddrPort, token string) error {
	out, err := o.httpGet(addr, 2*time.Second)
	if err == nil && strings.Contains(out, token) {
		return fmt.Errorf("the outside namespace got %q from http://%s/, must not", token, addr)
	}
	return nil
}

// defaultRoute is the container's IPv4 default route ("" if none).
func defaultRoute(t *testing.T, ctr string) string {
	t.Helper()
	for _, l := range strings.Split(mustDockerExec(t, ctr, "ip", "-4", "route"), "\n") {
		if strings.HasPrefix(l, "default") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

const optPrefix = "com.docker.network.bridge."

// Gateway modes, from an outside namespace that routes the container
// subnets through the host (as an upstream router would): nat lets nothing
// reach a container's address, nat-unprotected lets anything, routed does
// no NAT and opens only published container ports; trusted host
// interfaces reach published ports at the container's address.
func TestDocker28GatewayModes(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	o := newOutside(t)
	srv := o.serveTCP(t)
	at := func(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }

	type netw struct {
		name string
		opts []string
		sub  netip.Prefix
	}
	nets := []netw{
		{"mit-gw-nat", nil, freeV4Subnet(t, 111)},
		{"mit-gw-unprot", []string{"-o", optPrefix + "gateway_mode_ipv4=nat-unprotected"}, freeV4Subnet(t, 112)},
		{"mit-gw-routed", []string{"-o", optPrefix + "gateway_mode_ipv4=routed"}, freeV4Subnet(t, 113)},
		{"mit-gw-trusted", []string{"-o", optPrefix + "trusted_host_interfaces=" + o.hostIf}, freeV4Subnet(t, 114)},
	}
	tokens := map[string]string{}
	ips := map[string]netip.Addr{}
	ports := map[string]int{}
	for _, n := range nets {
		lc.net(n.name, append([]string{"-d", pluginName, "--subnet", n.sub.String()}, n.opts...)...)
		o.addRoute(t, n.sub)
		tokens[n.name] = newToken("gw")
		ports[n.name] = freePort(t)
		mustStartContainer(t, n.name+"-p", []string{"--network", n.name, "-p", fmt.Sprintf("%d:80", ports[n.name])}, webServer(tokens[n.name])...)
		ips[n.name] = containerIP(t, n.name+"-p", n.name)
		// The same server without -p: reachable at its address only where
		// the mode says every port is.
		mustStartContainer(t, n.name+"-u", []string{"--network", n.name}, webServer(tokens[n.name]+"u")...)
		ips[n.name+"-u"] = containerIP(t, n.name+"-u", n.name)
	}

	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	for _, n := range []string{"mit-gw-nat", "mit-gw-unprot", "mit-gw-trusted"} {
		check(n+": published host port", o.getHas(at(o.hostAddr, ports[n]), tokens[n], 10*time.Second))
		check(n+": outbound masqueraded", srv.expectFrom(n+"-p", o.hostAddr, 10*time.Second))
	}
	check("nat: container address, published port", o.noGet(at(ips["mit-gw-nat"], 80), tokens["mit-gw-nat"]))
	check("nat: container address, unpublished", o.noGet(at(ips["mit-gw-nat-u"], 80), tokens["mit-gw-nat"]+"u"))
	check("nat-unprotected: container address, unpublished", o.getHas(at(ips["mit-gw-unprot-u"], 80), tokens["mit-gw-unprot"]+"u", 10*time.Second))
	check("trusted: container address, published port", o.getHas(at(ips["mit-gw-trusted"], 80), tokens["mit-gw-trusted"], 10*time.Second))
	check("trusted: container address, unpublished", o.noGet(at(ips["mit-gw-trusted-u"], 80), tokens["mit-gw-trusted"]+"u"))

	// routed: no NAT either way; -p opens the container port, takes no host port.
	r := "mit-gw-routed"
	check("routed: container address, published port", o.getHas(at(ips[r], 80), tokens[r], 10*time.Second))
	check("routed: container address, unpublished", o.noGet(at(ips[r+"-u"], 80), tokens[r]+"u"))
	check("routed: outbound keeps the container address", srv.expectFrom(r+"-p", ips[r], 10*time.Second))
	check("routed: host port not published", o.noGet(at(o.hostAddr, ports[r]), tokens[r]))
	if rs := dnatFor("tcp", ports[r]); len(rs) > 0 {
		t.Errorf("routed: DNAT rules for host port %d: %v", ports[r], rs)
	}
	if portHeld(t, "tcp", ports[r]) {
		t.Errorf("routed: host port %d/tcp is held", ports[r])
	}
	if out, err := o.exec("/bin/busybox", "ping", "-c", "1", "-W", "2", ips[r+"-u"].String()); err != nil {
		t.Errorf("routed: the outside cannot ping a container: %v\n%s", err, out)
	}

	// Isolation from each other stays, whatever the mode.
	for _, from := range []string{"mit-gw-nat-p", "mit-gw-trusted-p"} {
		for _, to := range []string{"mit-gw-unprot-u", "mit-gw-routed"} {
			if err := noPing(from, ips[to]); err != nil {
				t.Errorf("isolation: %v", err)
			}
		}
	}
}

// isolated needs --internal (as on Docker's bridge) and puts no gateway on
// the bridge; Docker 28 then reserves none (GwAllocCheck). inhibit_ipv4 keeps
// the gateway off the bridge but announces it: a router on the bridge's LAN.
func TestDocker28IsolatedAndInhibit(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	for _, bad := range []struct{ what, name, mode, reason string }{
		{"isolated without --internal", "mit-gw-isobad", "isolated", "gateway mode isolated can only be used for an internal network"},
		{"gateway mode nated", "mit-gw-bad", "nated", "valid: nat, nat-unprotected, routed or isolated"},
	} {
		out, err := docker(t, "network", "create", "-d", pluginName, "--subnet", freeV4Subnet(t, 115).String(),
			"-o", optPrefix+"gateway_mode_ipv4="+bad.mode, bad.name)
		if err == nil {
			netRemove(t, bad.name)
			t.Fatalf("%s accepted: %s", bad.what, out)
		}
		if !strings.Contains(out, bad.reason) {
			t.Errorf("%s refused without the reason %q: %s", bad.what, bad.reason, out)
		}
	}

	iso := lc.net("mit-gw-iso", "-d", pluginName, "--internal", "--subnet", freeV4Subnet(t, 116).String(),
		"-o", optPrefix+"gateway_mode_ipv4=isolated")
	runContainer(t, "mit-gw-iso-a", "--network", "mit-gw-iso")
	runContainer(t, "mit-gw-iso-b", "--network", "mit-gw-iso")
	if err := ping(t, "mit-gw-iso-a", containerIP(t, "mit-gw-iso-b", "mit-gw-iso")); err != nil {
		t.Errorf("isolated: containers of the network: %v", err)
	}
	if addrs, err := linkAddrs(mynetBridge(iso)); err != nil || len(ipv4Only(addrs)) > 0 {
		t.Errorf("isolated: bridge %s addresses %v (%v), want no IPv4 address", mynetBridge(iso), addrs, err)
	}
	if r := defaultRoute(t, "mit-gw-iso-a"); r != "" {
		t.Errorf("isolated: container has a default route %q", r)
	}
	if gw := iso.IPAM.Config[0].Gateway; engineMajor(t) >= 28 && gw != "" {
		t.Errorf("isolated on Docker 28: gateway %s reserved, want none (GwAllocCheck)", gw)
	}

	sub := freeV4Subnet(t, 117)
	inh := lc.net("mit-gw-inhibit", "-d", pluginName, "--subnet", sub.String(), "-o", optPrefix+"inhibit_ipv4=true")
	runContainer(t, "mit-gw-inh-a", "--network", "mit-gw-inhibit")
	if addrs, err := linkAddrs(mynetBridge(inh)); err != nil || len(ipv4Only(addrs)) > 0 {
		t.Errorf("inhibit_ipv4: bridge %s addresses %v (%v), want no IPv4 address", mynetBridge(inh), addrs, err)
	}
	gw := containerNet(t, "mit-gw-inh-a", "mit-gw-inhibit").Gateway
	if r := defaultRoute(t, "mit-gw-inh-a"); gw == "" || !strings.Contains(r, "via "+gw+" ") {
		t.Errorf("inhibit_ipv4: default route %q, want one via the gateway %q", r, gw)
	}
}

func ipv4Only(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return out
}

// Endpoint driver options: the interface name cannot travel back through
// the remote protocol and is refused with the reason; sysctls Docker 28
// applies itself in the container.
func TestDocker28EndpointOptions(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	lc.net("mit-epo-a", "-d", pluginName, "--subnet", freeV4Subnet(t, 118).String())
	lc.net("mit-epo-b", "-d", pluginName, "--subnet", freeV4Subnet(t, 119).String())
	runContainer(t, "mit-epo-c", "--network", "mit-epo-a")

	out, err := docker(t, "network", "connect", "--driver-opt", "com.docker.network.endpoint.ifname=lan7", "mit-epo-b", "mit-epo-c")
	if err == nil {
		t.Fatalf("ifname accepted: %s", out)
	}
	if !strings.Contains(out, "cannot name the container's interface") {
		t.Errorf("ifname refusal does not give the reason: %s", out)
	}
	if got := strings.Fields(mustDockerExec(t, "mit-epo-c", "ls", "/sys/class/net")); len(got) != 2 {
		t.Errorf("container interfaces after the refused connect: %v, want eth0 lo", got)
	}

	if engineMajor(t) < 28 {
		t.Logf("engine older than 28: endpoint sysctls are not applied by Docker; not checked")
		return
	}
	mustDocker(t, "network", "connect", "--driver-opt", "com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1", "mit-epo-b", "mit-epo-c")
	if got := mustDockerExec(t, "mit-epo-c", "cat", "/proc/sys/net/ipv4/conf/eth1/log_martians"); got != "1" {
		t.Errorf("sysctl on the second interface: log_martians = %q, want 1", got)
	}
	if got := mustDockerExec(t, "mit-epo-c", "cat", "/proc/sys/net/ipv4/conf/eth0/log_martians"); got != "0" {
		t.Errorf("sysctl leaked to eth0: log_martians = %q", got)
	}
}

// IPv6-only networks (Docker 28's --ipv4=false): no IPv4 data reaches
// CreateNetwork; containers get IPv6 only, reach each other and the outside
// through the IPv6 gateway.
func TestDocker28IPv6Only(t *testing.T) {
	withPlugin(t)
	if engineMajor(t) < 28 {
		t.Fatalf("--ipv4=false needs Docker 28 (this engine is older): run it through `make integration-engine`")
	}
	lc := assertNoBridgeLeftovers(t)
	o := newOutside(t)
	hostV6, nsV6 := o.addV6(t)
	srv := o.serveTCPOn(t, nsV6)
	for i, ipam := range ipamSetups {
		name := fmt.Sprintf("mit-v6only-%d", i)
		n := lc.net(name, mynetNetArgs(ipam.args, "--ipv4=false", "--ipv6", "--subnet", freeV6Subnet(t).String())...)
		if len(ipv4Only(n.Subnets())) > 0 {
			t.Errorf("%s: IPv4 subnets %v", name, n.Subnets())
		}
		runContainer(t, name+"-a", "--network", name)
		runContainer(t, name+"-b", "--network", name)
		if v4 := mustDockerExec(t, name+"-a", "ip", "-4", "-o", "addr", "show", "dev", "eth0"); v4 != "" {
			t.Errorf("%s: IPv4 address in an IPv6-only network: %s", name, v4)
		}
		b6, err := netip.ParseAddr(containerNet(t, name+"-b", name).GlobalIPv6Address)
		if err != nil {
			t.Fatalf("%s: no IPv6 address: %v", name, err)
		}
		if err := ping(t, name+"-a", b6); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := srv.expectFrom(name+"-a", hostV6, 10*time.Second); err != nil {
			t.Errorf("%s: outbound over IPv6: %v", name, err)
		}
		if addrs, err := linkAddrs(mynetBridge(n)); err != nil || len(ipv4Only(addrs)) > 0 {
			t.Errorf("%s: bridge addresses %v (%v), want no IPv4 one", name, addrs, err)
		}
	}
}

// Beside Docker's own bridge networks: isolation both ways, DOCKER-USER
// applies to mynet traffic, and Docker 28's raw-table drops (direct access
// to its containers' addresses) do not touch mynet's published ports.
func TestDocker28FirewallCoexistence(t *testing.T) {
	withPlugin(t)
	lc := assertNoBridgeLeftovers(t)
	o := newOutside(t)
	at := func(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }

	dsub, msub := freeV4Subnet(t, 120), freeV4Subnet(t, 121)
	netCreate(t, "mit-co-docker", "-d", "bridge", "--subnet", dsub.String())
	lc.net("mit-co-mynet", "-d", pluginName, "--subnet", msub.String())
	dtok, mtok := newToken("docker"), newToken("mynet")
	dport, mport := freePort(t), 0
	mustStartContainer(t, "mit-co-d", []string{"--network", "mit-co-docker", "-p", fmt.Sprintf("%d:80", dport)}, webServer(dtok)...)
	for mport = freePort(t); mport == dport; mport = freePort(t) {
	}
	mustStartContainer(t, "mit-co-m", []string{"--network", "mit-co-mynet", "-p", fmt.Sprintf("%d:80", mport)}, webServer(mtok)...)
	dip, mip := containerIP(t, "mit-co-d", "mit-co-docker"), containerIP(t, "mit-co-m", "mit-co-mynet")

	if engineMajor(t) >= 28 {
		// The layout the rest of this test is about.
		raw := mustRun(t, "iptables-save", "-t", "raw")
		if !strings.Contains(raw, "-d "+dip.String()+"/32") || !strings.Contains(raw, "-j DROP") {
			t.Errorf("no raw-table drop for Docker's container %s: Docker 28's layout changed?\n%s", dip, raw)
		}
		fwd := mustRun(t, "iptables", "-S", "FORWARD")
		lines := strings.Split(strings.TrimSpace(fwd), "\n")
		var jumps []string
		for _, l := range lines {
			if i := strings.Index(l, "-j "); i >= 0 && strings.HasPrefix(l, "-A FORWARD") {
				jumps = append(jumps, strings.Fields(l[i+3:])[0])
			}
		}
		if len(jumps) < 3 || jumps[0] != "DOCKER-USER" || jumps[1] != "MYNET-FORWARD" || !slicesHas(jumps, "DOCKER-FORWARD") {
			t.Errorf("FORWARD jumps %v, want DOCKER-USER, MYNET-FORWARD, then Docker's DOCKER-FORWARD", jumps)
		}
	}

	// Published ports of both reach from outside: Docker's raw drops are for
	// its own containers' addresses, mynet's DNAT is untouched by them.
	if err := o.getHas(at(o.hostAddr, mport), mtok, 10*time.Second); err != nil {
		t.Errorf("mynet published port: %v", err)
	}
	if err := o.getHas(at(o.hostAddr, dport), dtok, 10*time.Second); err != nil {
		t.Errorf("control, Docker's published port: %v", err)
	}
	// Isolation, both ways, by address and through the other's published port.
	if err := noPing("mit-co-d", mip); err != nil {
		t.Errorf("Docker's bridge -> mynet: %v", err)
	}
	if err := noPing("mit-co-m", dip); err != nil {
		t.Errorf("mynet -> Docker's bridge: %v", err)
	}
	if out, err := fetchFrom("mit-co-d", mip, 80); err == nil && strings.Contains(out, mtok) {
		t.Errorf("Docker's container fetched from the mynet container's address: %s", out)
	}

	// DOCKER-USER: a user's drop for the mynet container applies to it.
	rule := []string{"DOCKER-USER", "-d", mip.String() + "/32", "-p", "tcp", "--dport", "80", "-j", "DROP"}
	mustRun(t, "iptables", append([]string{"-I"}, rule...)...)
	removed := false
	t.Cleanup(func() {
		if !removed {
			_ = exec.Command("iptables", append([]string{"-D"}, rule...)...).Run()
		}
	})
	if err := o.noGet(at(o.hostAddr, mport), mtok); err != nil {
		t.Errorf("DOCKER-USER drop not applied to mynet's published port: %v", err)
	}
	if err := o.getHas(at(o.hostAddr, dport), dtok, 10*time.Second); err != nil {
		t.Errorf("control, Docker's published port while the drop is in place: %v", err)
	}
	mustRun(t, "iptables", append([]string{"-D"}, rule...)...)
	removed = true
	if err := o.getHas(at(o.hostAddr, mport), mtok, 10*time.Second); err != nil {
		t.Errorf("mynet published port after the DOCKER-USER rule went: %v", err)
	}
}

func slicesHas(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
