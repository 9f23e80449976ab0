package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/mynet/mynet/state"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// runs returns how many iptables processes the firewall started so far.
func (l *lab) runs() int {
	n := l.fw.v4.runs
	if l.fw.v6 != nil {
		n += l.fw.v6.runs
	}
	return n
}

func TestIdempotentAndExactRemoval(t *testing.T) {
	l := newLab(t)
	l.addBridge("mn-aaaaaaaaaaaa", "198.18.10.1/24", "fd00:10::1/64")
	pristine4, pristine6 := normSave(l.save(v4)), normSave(l.save(v6))

	l.do(l.fw.EnsureBase)
	if strings.Contains(l.save(v6), "MYNET") {
		t.Errorf("EnsureBase made IPv6 chains with no IPv6 network")
	}
	n := Network{ID: "aaaaaaaaaaaa0123456789", Bridge: "mn-aaaaaaaaaaaa", Subnets: pfx("198.18.10.0/24", "fd00:10::/64"), ICC: false, Masquerade: true}
	// What a network leaves behind when removed: the base chains.
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error { return l.fw.RemoveNetwork(n) })
	base4, base6 := l.save(v4), l.save(v6)
	if strings.Contains(base4+base6, "mynet:") {
		t.Errorf("RemoveNetwork left rules of the network:\n%s\n%s", base4, base6)
	}
	before := l.runs()
	l.do(l.fw.EnsureBase)
	if d := l.runs() - before; d != 0 {
		t.Errorf("EnsureBase with nothing changed ran %d iptables processes, want 0 (same nf_tables generation)", d)
	}

	ports := []state.PortBinding{
		{Proto: "tcp", HostPort: 8080, ContainerIP: addr("198.18.10.2"), ContainerPort: 80},
		{Proto: "udp", HostIP: addr("192.0.2.1"), HostPort: 5353, ContainerIP: addr("198.18.10.2"), ContainerPort: 53},
		{Proto: "tcp", HostPort: 8080, ContainerIP: addr("fd00:10::2"), ContainerPort: 80},
	}
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error { return l.fw.AddPorts(n, ports) })
	after4, after6 := l.save(v4), l.save(v6)
	t.Logf("IPv4 rules of one network with 2 ports:\n%s", after4)

	// Count what one network and one port cost.
	count := func(s, what string) int { return strings.Count(s, what) }
	if got := count(after4, "mynet:aaaaaaaaaaaa"); got != 9+2 {
		t.Errorf("IPv4: %d rules with the network comment, want 11 (9 + 2 ports)", got)
	}
	if got := count(after6, "mynet:aaaaaaaaaaaa"); got != 7+1 {
		t.Errorf("IPv6: %d rules with the network comment, want 8 (7 + 1 port)", got)
	}

	before = l.runs()
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error { return l.fw.AddPorts(n, ports) })
	if d := l.runs() - before; d != 0 {
		t.Errorf("repeated AddNetwork+AddPorts ran %d iptables processes, want 0 (the cached ruleset answers)", d)
	}
	if a4, a6 := l.save(v4), l.save(v6); a4 != after4 || a6 != after6 {
		t.Errorf("second AddNetwork/AddPorts changed the rules:\n%s\n%s", a4, a6)
	}

	owned, err := func() (o []string, err error) {
		err = l.hostDo(func() error { o, err = l.fw.Owned(); return err })
		return
	}()
	if err != nil || !slices.Equal(owned, []string{"mn-aaaaaaaaaaaa"}) {
		t.Errorf("Owned = %v, %v", owned, err)
	}

	// RemovePorts is exact and idempotent.
	l.do(func() error { return l.fw.RemovePorts(n, ports[:1]) })
	l.do(func() error { return l.fw.RemovePorts(n, ports[:1]) })
	if got := count(l.save(v4), "DNAT --to-destination"); got != 1 {
		t.Errorf("after removing one IPv4 port: %d DNAT rules, want 1", got)
	}

	l.do(func() error { return l.fw.RemoveNetwork(n) })
	if a4, a6 := l.save(v4), l.save(v6); a4 != base4 || a6 != base6 {
		t.Errorf("RemoveNetwork left rules:\nIPv4:\n%s\nwant:\n%s\nIPv6:\n%s", a4, base4, a6)
	}
	before = l.runs()
	l.do(func() error { return l.fw.RemoveNetwork(Network{ID: n.ID}) })
	if d := l.runs() - before; d != 0 {
		t.Errorf("second RemoveNetwork ran %d processes, want 0", d)
	}

	l.do(l.fw.Cleanup)
	if a4, a6 := normSave(l.save(v4)), normSave(l.save(v6)); a4 != pristine4 || a6 != pristine6 {
		t.Errorf("Cleanup left:\n%s\n%s", a4, a6)
	}
	l.do(l.fw.Cleanup)
}

func TestEnsureBaseMovesJumpsBackToTop(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "ab00000000000000", Bridge: "myj0", ICC: true, Masquerade: true}, "198.18.40.1/24", "fd00:40::1/64")
	l.do(func() error { return l.fw.AddNetwork(n) })
	// What Docker does when it creates a bridge network: its rules at the
	// top of FORWARD, POSTROUTING and PREROUTING, then DOCKER-USER put back
	// at position 1 of FORWARD.
	l.do(func() error {
		for _, fam := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
			src := "172.17.0.0/16"
			if fam == iptables.ProtocolIPv6 {
				src = "fd00:17::/64"
			}
			ipt, err := iptables.NewWithProtocol(fam)
			if err != nil {
				return err
			}
			for _, step := range []func() error{
				func() error { return ipt.NewChain("filter", "DOCKER-USER") },
				func() error { return ipt.Append("filter", "DOCKER-USER", "-j", "RETURN") },
				func() error {
					return ipt.Insert("filter", "FORWARD", 1, "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT")
				},
				func() error { return ipt.Insert("filter", "FORWARD", 1, "-j", "DOCKER-USER") },
				func() error { return ipt.NewChain("nat", "DOCKER") },
				func() error {
					return ipt.Insert("nat", "PREROUTING", 1, "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER")
				},
				func() error { return ipt.Insert("nat", "POSTROUTING", 1, "-s", src, "-j", "MASQUERADE") },
			} {
				if err := step(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	first := func(fam family, table, chain string) []string {
		out := l.save(fam)
		var got []string
		cur := ""
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "*") {
				cur = line[1:]
			}
			if cur == table && strings.HasPrefix(line, "-A "+chain+" ") {
				got = append(got, line)
			}
		}
		return got
	}
	if r := first(v4, "filter", "FORWARD"); len(r) != 3 || !strings.Contains(r[0], "DOCKER-USER") || !strings.Contains(r[2], "MYNET-FORWARD") {
		t.Fatalf("setup: FORWARD = %q", r)
	}
	l.do(l.fw.EnsureBase)
	for _, fam := range []family{v4, v6} {
		for _, c := range []struct {
			table, chain, target string
			pos                  int
		}{
			// FORWARD: right after DOCKER-USER, before Docker's accepts.
			{"filter", "FORWARD", "MYNET-FORWARD", 1},
			{"nat", "PREROUTING", "MYNET-DNAT", 0},
			{"nat", "OUTPUT", "MYNET-DNAT", 0},
			{"nat", "POSTROUTING", "MYNET-POSTROUTING", 0},
		} {
			r := first(fam, c.table, c.chain)
			if len(r) <= c.pos || !strings.HasSuffix(r[c.pos], "-j "+c.target) {
				t.Errorf("%s %s %s: rules %q, want our jump at index %d", fam, c.table, c.chain, r, c.pos)
			}
			if n := strings.Count(strings.Join(r, "\n"), "-j "+c.target); n != 1 {
				t.Errorf("%s %s %s: %d jumps to %s, want 1", fam, c.table, c.chain, n, c.target)
			}
		}
		if r := first(fam, "filter", "FORWARD"); len(r) != 3 || !strings.Contains(r[0], "DOCKER-USER") {
			t.Errorf("%s FORWARD: %q: Docker's rules must stay, DOCKER-USER first", fam, r)
		}
	}
	before := l.runs()
	l.do(l.fw.EnsureBase)
	if d := l.runs() - before; d != 0 {
		t.Errorf("EnsureBase after its own repair ran %d processes, want 0", d)
	}
	// Docker puts DOCKER-USER back at the top after each network it
	// creates: ours stays right behind it and nothing needs moving.
	l.run("iptables", "-D", "FORWARD", "-j", "DOCKER-USER")
	l.run("iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
	before = l.runs()
	l.do(l.fw.EnsureBase)
	if d := l.runs() - before; d != 2 {
		t.Errorf("EnsureBase after DOCKER-USER re-insert ran %d processes, want 2 (saves only)", d)
	}
	// Cleanup leaves Docker's rules alone.
	l.do(l.fw.Cleanup)
	if r := first(v4, "filter", "FORWARD"); len(r) != 2 || !strings.Contains(r[0], "DOCKER-USER") {
		t.Errorf("after Cleanup FORWARD = %q", r)
	}
	if strings.Contains(l.save(v4)+l.save(v6), "MYNET") {
		t.Errorf("Cleanup left MYNET chains")
	}
}

// TestTraffic proves the rules with real connections.
func TestTraffic(t *testing.T) {
	// The outside knows a way back to the container subnets, so only
	// masquerading decides which source it sees.
	k := newKindsLab(t)
	l, netA, netB, netI, netM := k.lab, k.netA, k.netB, k.netI, k.netM
	a1, a2, b1, i1, i2, m1 := k.a1, k.a2, k.b1, k.i1, k.i2, k.m1
	gw := addr("198.18.1.1")
	gw6 := addr("fd00:1::1")
	l.addBridge("docker0", "198.18.9.1/24", "fd00:9::1/64") // a bridge of Docker's, no rules of ours
	b2 := l.addContainer("b2", "mn-b00000000000", "198.18.2.3/24", "198.18.2.1", "fd00:2::3/64", "fd00:2::1")
	d1 := l.addContainer("d1", "docker0", "198.18.9.2/24", "198.18.9.1", "fd00:9::2/64", "fd00:9::1")
	// Docker's own rule for docker0, after ours like on a real host.
	l.run("iptables", "-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT")
	l.run("ip6tables", "-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT")

	for _, c := range []*ctr{a1, a2, b1, b2, i1, i2, m1, d1} {
		l.serve(c.ns, 80)
	}
	l.serve(l.out, 80)
	out4, out6 := addr("192.0.2.2"), addr("2001:db8:1::2")
	host4, host6 := addr("192.0.2.1"), addr("2001:db8:1::1")

	l.do(l.fw.EnsureBase)
	for _, n := range []Network{netA, netB, netI, netM} {
		l.do(func() error { return l.fw.AddNetwork(n) })
	}

	t.Run("forwarding with policy DROP", func(t *testing.T) {
		l.policy("DROP")
		l.check(
			probe{"ICC on v4", a1.ns, hp(a2.ip4, 80), a1.ip4.String()},
			probe{"ICC on v6", a1.ns, hp(a2.ip6, 80), a1.ip6.String()},
			probe{"masquerade v4", a1.ns, hp(out4, 80), host4.String()},
			probe{"masquerade v6", a1.ns, hp(out6, 80), host6.String()},
			probe{"masquerade ICC-off network", b1.ns, hp(out4, 80), host4.String()},
			probe{"no masquerade", m1.ns, hp(out4, 80), m1.ip4.String()},
			probe{"internal ICC", i1.ns, hp(i2.ip4, 80), i1.ip4.String()},
		)
	})

	t.Run("drops with policy ACCEPT", func(t *testing.T) {
		l.policy("ACCEPT")
		across := slices.Concat(apart("A", a1, "B", b1), apart("A", a1, "internal", i1), apart("A", a1, "docker0", d1))
		l.check(append(across,
			probe{"ICC off v4", b1.ns, hp(b2.ip4, 80), ""},
			probe{"ICC off v6", b1.ns, hp(b2.ip6, 80), ""},
			probe{"internal->outside", i1.ns, hp(out4, 80), ""},
			probe{"outside->internal", l.out, hp(i1.ip4, 80), ""},
			// Control: without our rules the policy lets these through.
			probe{"docker0->outside", d1.ns, hp(out4, 80), d1.ip4.String()},
		)...)
	})

	t.Run("published ports", func(t *testing.T) {
		l.policy("DROP")
		portsA := []state.PortBinding{
			{Proto: "tcp", HostPort: 8080, ContainerIP: a1.ip4, ContainerPort: 80},
			{Proto: "tcp", HostPort: 8080, ContainerIP: a1.ip6, ContainerPort: 80},
		}
		portsB := []state.PortBinding{{Proto: "tcp", HostIP: host4, HostPort: 8081, ContainerIP: b1.ip4, ContainerPort: 80}}
		l.do(func() error { return l.fw.AddPorts(netA, portsA) })
		l.do(func() error { return l.fw.AddPorts(netB, portsB) })
		// The self-hairpin needs the port in hairpin mode (bridge-nf-call-iptables=1
		// makes the kernel bridge the translated packet back out of its port).
		l.ip(l.hostN, "link", "set", a1.port, "type", "bridge_slave", "hairpin", "on")
		l.check(
			probe{"outside -> host:8080", l.out, hp(host4, 8080), out4.String()},
			probe{"outside -> [host]:8080", l.out, hp(host6, 8080), out6.String()},
			probe{"host 127.0.0.1:8080", l.host, "127.0.0.1:8080", gw.String()},
			probe{"host -> own address:8080", l.host, hp(host4, 8080), host4.String()},
			probe{"hairpin from a2", a2.ns, hp(host4, 8080), gw.String()},
			probe{"hairpin from a2 via gateway", a2.ns, hp(gw, 8080), gw.String()},
			probe{"hairpin from a2 v6", a2.ns, hp(host6, 8080), gw6.String()},
			probe{"self hairpin a1", a1.ns, hp(host4, 8080), gw.String()},
			probe{"direct a2 -> a1 not masqueraded", a2.ns, hp(a1.ip4, 80), a2.ip4.String()},
			probe{"hairpin on ICC-off network", b2.ns, hp(host4, 8081), "198.18.2.1"},
			probe{"ICC-off direct still blocked", b2.ns, hp(b1.ip4, 80), ""},
			probe{"outside -> host:8081", l.out, hp(host4, 8081), out4.String()},
			probe{"other network -> published port", b1.ns, hp(host4, 8080), ""},
			probe{"docker0 -> published port", d1.ns, hp(host4, 8080), ""},
			probe{"outside direct to container, no DNAT", l.out, hp(a1.ip4, 80), ""},
		)
		// A port of another network on the same host port is refused.
		err := l.hostDo(func() error {
			return l.fw.AddPorts(netB, []state.PortBinding{{Proto: "tcp", HostPort: 8080, ContainerIP: b1.ip4, ContainerPort: 80}})
		})
		if !errors.Is(err, ErrPortConflict) {
			t.Errorf("conflicting port: got %v", err)
		}
		// sctp: programmed like the others, or a clear error.
		sctp := []state.PortBinding{{Proto: "sctp", HostPort: 9000, ContainerIP: a1.ip4, ContainerPort: 9000}}
		if err := l.hostDo(func() error { return l.fw.AddPorts(netA, sctp) }); err != nil {
			if !strings.Contains(err.Error(), "sctp") {
				t.Errorf("sctp error does not name sctp: %v", err)
			}
			t.Logf("sctp unavailable: %v", err)
		} else if !strings.Contains(l.save(v4), "-p sctp -m sctp --dport 9000") {
			t.Errorf("sctp rule missing")
		}
		l.do(func() error { return l.fw.RemovePorts(netA, append(portsA, sctp...)) })
		l.check(
			probe{"removed port", l.out, hp(host4, 8080), ""},
			probe{"other port kept", l.out, hp(host4, 8081), out4.String()},
		)
	})

	t.Run("owned and removal", func(t *testing.T) {
		var owned []OwnedNetwork
		l.do(func() (err error) { owned, err = l.fw.OwnedNetworks(); return })
		want := []OwnedNetwork{{"a00000000000", "mn-a00000000000", ""}, {"b00000000000", "mn-b00000000000", ""}, {"c00000000000", "myi0", ""}, {"d00000000000", "mym0", ""}}
		if !slices.Equal(owned, want) {
			t.Errorf("OwnedNetworks = %v, want %v", owned, want)
		}
		l.do(func() error { return l.fw.RemoveNetwork(Network{ID: "b00000000000"}) })
		l.policy("ACCEPT")
		// Without its rules, nothing isolates B any more (policy ACCEPT):
		// proves the rules were the ones dropping.
		l.check(probe{"B->docker0 after removal", b1.ns, hp(d1.ip4, 80), b1.ip4.String()})
		// B's bridge is no bridge of ours any more: for A it is like any other
		// interface of the host (masqueraded egress).
		l.check(probe{"A->former B", a1.ns, hp(b1.ip4, 80), "198.18.2.1"})
		var bridges []string
		l.do(func() (err error) { bridges, err = l.fw.Owned(); return })
		if !slices.Equal(bridges, []string{"mn-a00000000000", "myi0", "mym0"}) {
			t.Errorf("Owned = %v", bridges)
		}
	})

	t.Run("route_localnet", func(t *testing.T) {
		var v string
		l.do(func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/mn-a00000000000/route_localnet")
			v = strings.TrimSpace(string(b))
			return err
		})
		if v != "1" {
			t.Errorf("route_localnet on A's bridge = %q", v)
		}
	})
}

// TestSelfHairpinNeedsHairpinMode documents why the caller must enable
// hairpin mode on the bridge ports.
func TestSelfHairpinNeedsHairpinMode(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "e00000000000", Bridge: "mye0", ICC: true, Masquerade: true}, "198.18.5.1/24", "")
	c := l.addContainer("e1", "mye0", "198.18.5.2/24", "198.18.5.1", "", "")
	l.serve(c.ns, 80)
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error {
		return l.fw.AddPorts(n, []state.PortBinding{{Proto: "tcp", HostPort: 8080, ContainerIP: c.ip4, ContainerPort: 80}})
	})
	_, err := dial(c.ns, "192.0.2.1:8080")
	t.Logf("self hairpin without hairpin mode: err=%v", err)
	l.ip(l.hostN, "link", "set", c.port, "type", "bridge_slave", "hairpin", "on")
	l.check(probe{"self hairpin with hairpin mode", c.ns, "192.0.2.1:8080", "198.18.5.1"})
}

func TestRollback(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "f00000000000", Bridge: "myf0", ICC: false, Masquerade: true}, "198.18.6.1/24", "fd00:6::1/64")
	l.do(l.fw.EnsureBase)
	base4, base6 := l.save(v4), l.save(v6)
	readLocalnet := func() string {
		var v string
		l.do(func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/myf0/route_localnet")
			v = strings.TrimSpace(string(b))
			return err
		})
		return v
	}

	// IPv6 restore fails: the IPv4 rules and route_localnet are undone.
	boom := errors.New("injected failure")
	l.fw.v6.applyHook = func(string) error { return boom }
	err := l.hostDo(func() error { return l.fw.AddNetwork(n) })
	l.fw.v6.applyHook = nil
	if !errors.Is(err, boom) {
		t.Fatalf("AddNetwork: %v", err)
	}
	if a4, a6 := l.save(v4), l.save(v6); a4 != base4 || a6 != base6 {
		t.Errorf("failed AddNetwork left rules:\n%s\n%s", a4, a6)
	}
	if v := readLocalnet(); v != "0" {
		t.Errorf("route_localnet = %s after rollback", v)
	}

	// Missing bridge: error, nothing added.
	err = l.hostDo(func() error {
		return l.fw.AddNetwork(Network{ID: "f10000000000", Bridge: "nosuchbr", Masquerade: true, Subnets: pfx("198.18.7.0/24")})
	})
	if err == nil {
		t.Errorf("AddNetwork on a missing bridge succeeded")
	}
	if a4 := l.save(v4); a4 != base4 {
		t.Errorf("failed AddNetwork left rules:\n%s", a4)
	}

	// AddPorts is all or nothing across families.
	l.do(func() error { return l.fw.AddNetwork(n) })
	withNet4 := l.save(v4)
	ports := []state.PortBinding{
		{Proto: "tcp", HostPort: 8080, ContainerIP: addr("198.18.6.2"), ContainerPort: 80},
		{Proto: "tcp", HostPort: 8080, ContainerIP: addr("fd00:6::2"), ContainerPort: 80},
	}
	l.fw.v6.applyHook = func(string) error { return boom }
	err = l.hostDo(func() error { return l.fw.AddPorts(n, ports) })
	l.fw.v6.applyHook = nil
	if !errors.Is(err, boom) {
		t.Fatalf("AddPorts: %v", err)
	}
	if a4 := l.save(v4); a4 != withNet4 {
		t.Errorf("failed AddPorts left IPv4 rules:\n%s", a4)
	}
	// Unprogrammed network.
	err = l.hostDo(func() error {
		return l.fw.AddPorts(Network{ID: "f20000000000", Bridge: "myf0", Subnets: n.Subnets}, ports[:1])
	})
	if !errors.Is(err, ErrNetworkNotProgrammed) {
		t.Errorf("AddPorts on unknown network: %v", err)
	}
	l.do(l.fw.Cleanup)
}

// TestConcurrent adds and removes networks from many goroutines.
func TestConcurrent(t *testing.T) {
	l := newLab(t)
	const n = 6
	var nets []Network
	for i := range n {
		br := fmt.Sprintf("myc%d", i)
		nets = append(nets, l.addNetwork(Network{ID: fmt.Sprintf("%012d", i+1), Bridge: br, ICC: i%2 == 0, Masquerade: true},
			fmt.Sprintf("198.18.%d.1/24", 20+i), fmt.Sprintf("fd00:%d::1/64", 20+i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i, nw := range nets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.hostDo(func() error {
				if err := l.fw.AddNetwork(nw); err != nil {
					return err
				}
				p := []state.PortBinding{{Proto: "tcp", HostPort: uint16(9000 + i), ContainerIP: nw.Subnets[0].Addr().Next().Next(), ContainerPort: 80}}
				if err := l.fw.AddPorts(nw, p); err != nil {
					return err
				}
				if err := l.fw.EnsureBase(); err != nil {
					return err
				}
				if i%2 == 1 {
					return l.fw.RemoveNetwork(nw)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var bridges []string
	l.do(func() (err error) { bridges, err = l.fw.Owned(); return })
	if !slices.Equal(bridges, []string{"myc0", "myc2", "myc4"}) {
		t.Errorf("Owned = %v", bridges)
	}
	s4 := l.save(v4)
	for _, nw := range nets[:1] {
		// Bridges named myc<i>: 5 jumps into their shards of their own.
		if got := strings.Count(s4, "mynet:"+nw.ID); got != 15 {
			t.Errorf("network %s: %d IPv4 rules, want 15 (9 + 5 jumps + 1 port)", nw.ID, got)
		}
	}
	l.do(l.fw.Cleanup)
}

// TestConverge: AddNetwork with a changed configuration for the same id
// ends in the same rules as adding the new configuration from scratch.
func TestConverge(t *testing.T) {
	l := newLab(t)
	sub := l.addBridge("myv0", "198.18.8.1/24", "")
	l.addBridge("myv1", "198.18.18.1/24", "")
	n := Network{ID: "abcdefabcdef", Bridge: "myv0", ICC: true, Masquerade: true, Subnets: sub}
	changed := n
	changed.ICC, changed.Internal, changed.Bridge = false, true, "myv1"

	l.do(func() error { return l.fw.AddNetwork(changed) })
	want := l.save(v4)
	l.do(func() error { return l.fw.RemoveNetwork(changed) })

	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error {
		return l.fw.AddPorts(n, []state.PortBinding{{Proto: "tcp", HostPort: 80, ContainerIP: addr("198.18.8.2"), ContainerPort: 80}})
	})
	l.do(func() error { return l.fw.AddNetwork(changed) })
	if got := l.save(v4); got != want {
		t.Errorf("converged rules:\n%s\nwant:\n%s", got, want)
	}
	l.do(l.fw.Cleanup)
}

// TestTiming logs what the operations cost (no assertion on time).
func TestTiming(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "123412341234", Bridge: "myt0", ICC: true, Masquerade: true}, "198.18.30.1/24", "fd00:30::1/64")
	p := []state.PortBinding{{Proto: "tcp", HostPort: 80, ContainerIP: addr("198.18.30.2"), ContainerPort: 80}}
	l.do(l.fw.EnsureBase)
	for _, step := range []struct {
		name string
		fn   func() error
	}{
		{"EnsureBase (no change)", l.fw.EnsureBase},
		{"AddNetwork", func() error { return l.fw.AddNetwork(n) }},
		{"AddNetwork (no change)", func() error { return l.fw.AddNetwork(n) }},
		{"AddPorts", func() error { return l.fw.AddPorts(n, p) }},
		{"RemovePorts", func() error { return l.fw.RemovePorts(n, p) }},
		{"RemoveNetwork", func() error { return l.fw.RemoveNetwork(n) }},
	} {
		start, runs := time.Now(), l.runs()
		l.do(step.fn)
		t.Logf("%-24s %3d ms, %d iptables processes", step.name, time.Since(start).Milliseconds(), l.runs()-runs)
	}
}

// A forwarded packet walks only the shard of its own network: the parents'
// jumps into every other shard count no packet. Network A (bridge
// mn-a00000000000) is reached through the shard guard, the internal network
// I (bridge myi0, shard c) through jumps of its own.
func TestPacketsWalkOnlyTheirShard(t *testing.T) {
	k := newKindsLab(t)
	l := k.lab
	for _, c := range []*ctr{k.a2, k.i2} {
		l.serve(c.ns, 80)
	}
	l.serve(l.out, 80)
	l.do(l.fw.EnsureBase)
	for _, n := range []Network{k.netA, k.netB, k.netI, k.netM} {
		l.do(func() error { return l.fw.AddNetwork(n) })
	}
	l.policy("DROP")
	l.run("iptables", "-Z")
	l.check(
		probe{"A within", k.a1.ns, hp(k.a2.ip4, 80), k.a1.ip4.String()},
		probe{"A to the outside", k.a1.ns, hp(addr("192.0.2.2"), 80), "192.0.2.1"},
		probe{"I within", k.i1.ns, hp(k.i2.ip4, 80), k.i1.ip4.String()},
	)
	// "[packets:bytes] -A PARENT ... -j PARENT-<s>" for the parents' jumps.
	jump := regexp.MustCompile(`^\[(\d+):\d+\] -A (MYNET-FORWARD|MYNET-ISO-1|MYNET-ISO-2) (.*)-j (MYNET-(?:FORWARD|ISO-1|ISO-2)-([0-9a-f]))$`)
	seen := map[string]bool{}
	for _, line := range strings.Split(l.run("iptables-save", "-c", "-t", "filter"), "\n") {
		m := jump.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		packets, parent, match, shardOf := m[1], m[2], m[3], m[5]
		counted := packets != "0"
		switch {
		case shardOf == "a" && strings.Contains(match, "mn-a+") && parent != "MYNET-ISO-2":
			// A's packets come in on its bridge (and, within A, go out on it).
			seen[parent+" a"] = seen[parent+" a"] || counted
		case shardOf == "c" && strings.Contains(match, "myi0") && parent != "MYNET-ISO-2":
			seen[parent+" myi0"] = seen[parent+" myi0"] || counted
		case counted:
			t.Errorf("%s: a jump A's and I's packets had no business taking", line)
		}
	}
	for _, want := range []string{"MYNET-FORWARD a", "MYNET-ISO-1 a", "MYNET-FORWARD myi0", "MYNET-ISO-1 myi0"} {
		if !seen[want] {
			t.Errorf("no packet took the jump %s; iptables-save -c:\n%s", want, l.run("iptables-save", "-c", "-t", "filter"))
		}
	}
}

// Without a network of ours no built-in chain jumps into our chains: the
// host's packets cross no rule of mynet's. The jumps come with the first
// network and go with the last, whichever instance made them.
func TestNoJumpsIntoOursWithoutNetworks(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "a40000000000", Bridge: BridgeName("a40000000000"), ICC: true, Masquerade: true}, "198.18.60.1/24", "fd00:60::1/64")
	m := l.addNetwork(Network{ID: "b40000000000", Bridge: BridgeName("b40000000000"), ICC: true, Masquerade: true}, "198.18.61.1/24", "")
	var other *Firewall
	l.do(func() (err error) { other, err = NewWithConfig(nil, Config{Owner: "other"}); return })
	// "-A FORWARD ... -j MYNET-FORWARD" and the like, in both families.
	entries := func() (n int) {
		for _, fam := range []family{v4, v6} {
			for _, line := range strings.Split(l.save(fam), "\n") {
				f := strings.Fields(line)
				if len(f) > 2 && f[0] == "-A" && !strings.HasPrefix(f[1], chainPrefix) && strings.HasPrefix(f[len(f)-1], chainPrefix) {
					n++
				}
			}
		}
		return n
	}
	expect := func(when string, want int) {
		t.Helper()
		if got := entries(); got != want {
			t.Errorf("%s: %d jumps from built-in chains into ours, want %d:\n%s\n%s", when, got, want, l.save(v4), l.save(v6))
		}
	}
	l.do(l.fw.EnsureBase)
	expect("no network", 0)
	// IPv4: FORWARD, nat PREROUTING, OUTPUT, POSTROUTING, raw PREROUTING;
	// IPv6 the same without raw.
	l.do(func() error { return l.fw.AddNetwork(n) })
	expect("one dual-stack network", 5+4)
	l.do(func() error { return l.fw.RemoveNetwork(n) })
	expect("its removal", 0)
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error { return other.AddNetwork(m) })
	l.do(func() error { return l.fw.RemoveNetwork(n) })
	expect("the other instance's IPv4 network left", 5)
	// That instance's copy of the ruleset still shows n: the periodic check
	// removes the jumps.
	l.do(func() error { return other.RemoveNetwork(m) })
	l.do(l.fw.EnsureBase)
	expect("none left", 0)
	before := l.runs()
	l.do(l.fw.EnsureBase)
	if d := l.runs() - before; d != 0 {
		t.Errorf("EnsureBase with no network and nothing changed ran %d processes, want 0", d)
	}
	expect("EnsureBase with none left", 0)
	l.do(l.fw.Cleanup)
}
