//go:build integration

package integration

// mynet's IPAM under Docker's own bridge driver:
//   docker network create -d bridge --ipam-driver mynetit ...

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// ipamNet is the common prefix of `docker network create` arguments here.
var ipamNet = []string{"-d", "bridge", "--ipam-driver", pluginName}

func args(extra ...string) []string { return append(append([]string{}, ipamNet...), extra...) }

// assertBridgeHas checks that Docker put addr (with the pool's prefix length) on the bridge.
func assertBridgeHas(t *testing.T, n NetworkInfo, addr netip.Prefix) {
	t.Helper()
	br := n.BridgeName()
	addrs, err := linkAddrs(br)
	if err != nil {
		t.Errorf("bridge of %s: %v", n.Name, err)
		return
	}
	for _, a := range addrs {
		if a == addr {
			return
		}
	}
	t.Errorf("bridge %s of network %s has addresses %v, want %s among them", br, n.Name, addrs, addr)
}

// a) explicit pool with --ip-range, --gateway, --aux-address and --ip.
func TestIPAMExplicitPool(t *testing.T) {
	withPlugin(t)
	sub := freeSubnet(t, "10.91.0.0/24")
	gw := nthAddr(sub, 1)
	rng := netip.PrefixFrom(nthAddr(sub, 128), sub.Bits()+1) // upper half
	aux := nthAddr(sub, 5)
	fixed := nthAddr(sub, 200)
	const name = "mit-ipam-explicit"

	n := netCreate(t, name, args("--subnet", sub.String(), "--ip-range", rng.String(),
		"--gateway", gw.String(), "--aux-address", "a1="+aux.String())...)
	if n.IPAM.Driver != pluginName {
		t.Errorf("IPAM driver = %q, want %q", n.IPAM.Driver, pluginName)
	}
	if len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Gateway != gw.String() || n.IPAM.Config[0].Subnet != sub.String() {
		t.Errorf("network IPAM config = %+v, want subnet %s gateway %s", n.IPAM.Config, sub, gw)
	}
	// What the IPAM actually answered shows on the bridge (Docker puts the
	// gateway from IPAMData there) and in the containers' gateway.
	assertBridgeHas(t, n, netip.PrefixFrom(gw, sub.Bits()))

	seen := map[netip.Addr]string{}
	for i := 0; i < 3; i++ {
		ctr := fmt.Sprintf("mit-ipam-explicit-%d", i)
		runContainer(t, ctr, "--network", name)
		ep := containerNet(t, ctr, name)
		ip, err := netip.ParseAddr(ep.IPAddress)
		if err != nil {
			t.Fatalf("%s: address %q: %v", ctr, ep.IPAddress, err)
		}
		if !rng.Contains(ip) {
			t.Errorf("%s got %s, outside --ip-range %s", ctr, ip, rng)
		}
		if ip == gw || ip == aux {
			t.Errorf("%s got the reserved address %s (gateway %s, aux %s)", ctr, ip, gw, aux)
		}
		if ep.IPPrefixLen != sub.Bits() {
			t.Errorf("%s prefix length = %d, want %d (the pool's, not the range's)", ctr, ep.IPPrefixLen, sub.Bits())
		}
		if ep.Gateway != gw.String() {
			t.Errorf("%s gateway = %q, want %s", ctr, ep.Gateway, gw)
		}
		if prev, dup := seen[ip]; dup {
			t.Errorf("%s and %s both got %s", prev, ctr, ip)
		}
		seen[ip] = ctr
	}

	// --ip is honoured ...
	runContainer(t, "mit-ipam-explicit-fixed", "--network", name, "--ip", fixed.String())
	if got := containerIP(t, "mit-ipam-explicit-fixed", name); got != fixed {
		t.Errorf("--ip %s: container got %s", fixed, got)
	}
	if prev, dup := seen[fixed]; dup {
		t.Errorf("%s was already given to %s before --ip asked for it", fixed, prev)
	}
	// ... and the same address is refused while in use, with our message.
	out, err := tryRunContainer(t, "mit-ipam-explicit-dup", "--network", name, "--ip", fixed.String())
	if err == nil {
		t.Errorf("second container with --ip %s started (it got %s); want it refused", fixed,
			containerIP(t, "mit-ipam-explicit-dup", name))
	} else if !strings.Contains(out, fixed.String()) || !strings.Contains(strings.ToLower(out), "use") {
		t.Errorf("refusal of duplicate --ip %s does not name the address and say it is in use:\n%s", fixed, out)
	}

	// The addresses are real: containers reach each other and the gateway.
	expectPing(t, "", "mit-ipam-explicit-0", fixed)
	expectPing(t, "", "mit-ipam-explicit-1", gw)
}

// b) automatic pools: distinct, overlapping nothing on the host or in Docker.
func TestIPAMAutomaticPools(t *testing.T) {
	withPlugin(t)
	before, err := hostRoutes()
	if err != nil {
		t.Fatalf("host routes: %v", err)
	}
	const count = 4
	names := map[string]bool{}
	var nets []NetworkInfo
	for i := 0; i < count; i++ {
		name := fmt.Sprintf("mit-ipam-auto-%d", i)
		names[name] = true
		nets = append(nets, netCreate(t, name, ipamNet...))
	}

	others, err := allNetworks()
	if err != nil {
		t.Fatal(err)
	}
	var subs []netip.Prefix
	for _, n := range nets {
		if n.IPAM.Driver != pluginName {
			t.Errorf("%s: IPAM driver = %q, want %q", n.Name, n.IPAM.Driver, pluginName)
		}
		ss := n.Subnets()
		var v4 []netip.Prefix
		for _, s := range ss {
			if s.Addr().Is4() {
				v4 = append(v4, s)
			}
		}
		if len(v4) != 1 {
			t.Errorf("%s: IPv4 subnets %v, want exactly one (config %+v)", n.Name, v4, n.IPAM.Config)
			continue
		}
		s := v4[0]
		t.Logf("%s got %s (gateway %s)", n.Name, s, n.IPAM.Config[0].Gateway)
		if s != s.Masked() {
			t.Errorf("%s: subnet %s has host bits set", n.Name, s)
		}
		if s.Bits() > 30 {
			t.Errorf("%s: subnet %s is too small to be a default pool", n.Name, s)
		}
		if gw, err := netip.ParseAddr(n.IPAM.Config[0].Gateway); err != nil || !s.Contains(gw) {
			t.Errorf("%s: gateway %q not inside %s", n.Name, n.IPAM.Config[0].Gateway, s)
		} else {
			assertBridgeHas(t, n, netip.PrefixFrom(gw, s.Bits()))
		}
		for i, o := range subs {
			if o.Overlaps(s) {
				t.Errorf("%s got %s, overlapping %s of %s", n.Name, s, o, nets[i].Name)
			}
		}
		subs = append(subs, s)
		for _, r := range before {
			if r.Dst.Overlaps(s) {
				t.Errorf("%s got %s, overlapping host route %s", n.Name, s, r)
			}
		}
		for _, o := range others {
			if names[o.Name] {
				continue
			}
			for _, op := range o.Subnets() {
				if op.Overlaps(s) {
					t.Errorf("%s got %s, overlapping %s of Docker network %s", n.Name, s, op, o.Name)
				}
			}
		}
	}
	if t.Failed() || len(subs) == 0 {
		return
	}

	// A container on an automatic pool gets an address from it.
	runContainer(t, "mit-ipam-auto-c", "--network", nets[0].Name)
	if ip := containerIP(t, "mit-ipam-auto-c", nets[0].Name); !subs[0].Contains(ip) {
		t.Errorf("container on %s got %s, outside its subnet %s", nets[0].Name, ip, subs[0])
	}
}

// c) dual stack: an IPv6 pool next to the IPv4 one.
func TestIPAMIPv6(t *testing.T) {
	withPlugin(t)
	v4 := freeSubnet(t, "10.92.0.0/24")
	v6 := freeSubnet(t, "fd00:92::/64")
	const name = "mit-ipam-v6"
	n := netCreate(t, name, args("--ipv6", "--subnet", v4.String(), "--subnet", v6.String())...)
	if !n.EnableIPv6 {
		t.Errorf("network %s: EnableIPv6 = false", name)
	}
	got := n.Subnets()
	if len(got) != 2 {
		t.Errorf("network subnets = %v, want %s and %s", got, v4, v6)
	}

	runContainer(t, "mit-ipam-v6-a", "--network", name)
	runContainer(t, "mit-ipam-v6-b", "--network", name)
	epA := containerNet(t, "mit-ipam-v6-a", name)
	epB := containerNet(t, "mit-ipam-v6-b", name)
	var a6 [2]netip.Addr
	for i, ep := range []EndpointInfo{epA, epB} {
		ip4, err4 := netip.ParseAddr(ep.IPAddress)
		if err4 != nil || !v4.Contains(ip4) {
			t.Errorf("container %d: IPv4 address %q not in %s", i, ep.IPAddress, v4)
		}
		ip6, err := netip.ParseAddr(ep.GlobalIPv6Address)
		if err != nil || !v6.Contains(ip6) {
			t.Errorf("container %d: GlobalIPv6Address %q not in %s", i, ep.GlobalIPv6Address, v6)
			continue
		}
		if ep.GlobalIPv6PrefixLen != v6.Bits() {
			t.Errorf("container %d: IPv6 prefix length %d, want %d", i, ep.GlobalIPv6PrefixLen, v6.Bits())
		}
		a6[i] = ip6
	}
	if a6[0].IsValid() && a6[0] == a6[1] {
		t.Errorf("both containers got %s", a6[0])
	}
	gw6, err := netip.ParseAddr(epA.IPv6Gateway)
	if err != nil || !v6.Contains(gw6) {
		t.Fatalf("container IPv6 gateway %q not in %s", epA.IPv6Gateway, v6)
	}
	if gw6 == a6[0] || gw6 == a6[1] {
		t.Errorf("a container got the IPv6 gateway address %s", gw6)
	}
	assertBridgeHas(t, n, netip.PrefixFrom(gw6, v6.Bits()))

	expectPing(t, "container cannot reach its IPv6 gateway", "mit-ipam-v6-a", gw6)
	if a6[1].IsValid() {
		expectPing(t, "containers cannot reach each other over IPv6", "mit-ipam-v6-a", a6[1])
	}
}

// d) a crash (SIGKILL) of the plugin loses no allocation and leaks no pool.
func TestIPAMCrashSafety(t *testing.T) {
	p := withPlugin(t)
	sub := freeSubnet(t, "10.93.0.0/24")
	const name = "mit-ipam-crash"
	netCreate(t, name, args("--subnet", sub.String())...)

	ctrs := []string{}
	addrs := map[string]netip.Addr{}
	start := func(i int) {
		ctr := fmt.Sprintf("mit-ipam-crash-%d", i)
		runContainer(t, ctr, "--network", name)
		ctrs = append(ctrs, ctr)
		addrs[ctr] = containerIP(t, ctr, name)
	}
	for i := 0; i < 3; i++ {
		start(i)
	}

	t.Logf("killing plugin pid %d (SIGKILL)", p.Pid())
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("restart on the same state: %v", err)
	}
	t.Logf("plugin restarted, pid %d", p.Pid())

	for i := 3; i < 6; i++ {
		start(i)
	}
	gw := nthAddr(sub, 1)
	byAddr := map[netip.Addr]string{}
	for _, c := range ctrs {
		a := addrs[c]
		if !sub.Contains(a) || a == gw {
			t.Errorf("%s got %s (subnet %s, gateway %s)", c, a, sub, gw)
		}
		if prev, dup := byAddr[a]; dup {
			t.Errorf("address %s handed out twice: %s (before the crash) and %s", a, prev, c)
		}
		byAddr[a] = c
	}
	t.Logf("addresses: %v", addrs)

	// Asking for an address held since before the crash must be refused.
	taken := addrs[ctrs[0]]
	if out, err := tryRunContainer(t, "mit-ipam-crash-dup", "--network", name, "--ip", taken.String()); err == nil {
		t.Errorf("--ip %s (held by %s since before the crash) was handed out again", taken, ctrs[0])
	} else if !strings.Contains(out, taken.String()) {
		t.Errorf("refusal of --ip %s does not name the address:\n%s", taken, out)
	}
	// Old containers still talk to each other and to the new ones.
	for _, pair := range [][2]string{{ctrs[0], ctrs[1]}, {ctrs[2], ctrs[0]}, {ctrs[3], ctrs[1]}} {
		expectPing(t, "", pair[0], addrs[pair[1]])
	}

	// Everything goes away cleanly and the pool is free again.
	mustDocker(t, append([]string{"rm", "-f"}, ctrs...)...)
	_, _ = dockerCmd("rm", "-f", "mit-ipam-crash-dup")
	mustDocker(t, "network", "rm", name)
	n2 := netCreate(t, "mit-ipam-crash-again", args("--subnet", sub.String())...)
	if s := n2.Subnets(); len(s) != 1 || s[0] != sub {
		t.Errorf("re-created network subnets = %v, want %s", s, sub)
	}
	runContainer(t, "mit-ipam-crash-again-0", "--network", n2.Name)
	if ip := containerIP(t, "mit-ipam-crash-again-0", n2.Name); !sub.Contains(ip) {
		t.Errorf("container on the re-created network got %s, outside %s", ip, sub)
	}
	if strings.Contains(p.LogSince(0, 1<<20), "panic:") {
		t.Errorf("plugin log contains a panic:\n%s", grep(p.LogSince(0, 1<<20), regexp.MustCompile(`panic|goroutine`)))
	}
}

// grep returns the lines of s matching re (at most 40).
func grep(s string, re *regexp.Regexp) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
			if len(out) == 40 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
