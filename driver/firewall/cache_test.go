package firewall

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/mynet/mynet/state"
)

// sortedRules returns the chain declarations and rules of a save, sorted,
// so that two saves compare whatever order the chains were created in.
func sortedRules(save string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, ":") || strings.HasPrefix(l, "*") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// restoreNoflush loads the IPv4 rules of an iptables-save text into the
// host namespace on top of what is there, as an older mynet left them.
func (l *lab) restoreNoflush(save string) {
	l.t.Helper()
	l.do(func() error {
		cmd := exec.Command("iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(save)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore --noflush: %v: %s", err, out)
		}
		return nil
	})
}

// TestCacheAndForeignChanges: with nobody else touching the firewall a
// call reads nothing; after someone else's change a removal trusts its copy
// of our own chains (one process, no read), adding a network and EnsureBase
// read again, and a
// restore that fails because someone changed our chains is planned again
// on a fresh read.
func TestCacheAndForeignChanges(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "ca0000000000", Bridge: "myk0", ICC: true, Masquerade: true}, "198.18.41.1/24", "")
	m := l.addNetwork(Network{ID: "cb0000000000", Bridge: "myk1", ICC: true, Masquerade: true}, "198.18.42.1/24", "")
	l.do(func() error { return l.fw.AddNetwork(n) })
	want := l.save(v4)
	processes := func(what string, want int, fn func() error) {
		t.Helper()
		runs := l.runs()
		l.do(fn)
		if d := l.runs() - runs; d != want {
			t.Errorf("%s ran %d iptables processes, want %d", what, d, want)
		}
	}
	processes("repeated AddNetwork", 0, func() error { return l.fw.AddNetwork(n) })

	// An administrator deletes one of the network's rules: adding a
	// network reads again (others may have put rules above ours) and
	// repairs; EnsureBase then reads only the family it has not read.
	l.run("iptables", "-D", chForward+"-c", "-o", "myk0", "-m", "comment", "--comment", "mynet:ca0000000000", "-j", "DROP")
	processes("AddNetwork on a stale copy", 2, func() error { return l.fw.AddNetwork(n) }) // save, restore
	if got := l.save(v4); got != want {
		t.Errorf("after repair:\n%s\nwant:\n%s", got, want)
	}
	processes("EnsureBase after a foreign change", 1, l.fw.EnsureBase) // the IPv6 save
	processes("AddNetwork after EnsureBase", 0, func() error { return l.fw.AddNetwork(n) })

	// What Docker does after each network it creates: one read to add a
	// network (the order of FORWARD may have changed), none to remove one.
	l.run("iptables", "-N", "DOCKER-USER")
	l.run("iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
	processes("AddNetwork after Docker's change", 2, func() error { return l.fw.AddNetwork(m) })
	// Docker's next change (the same jump moved back to the top) leaves
	// the copy stale again.
	l.run("iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
	l.run("iptables", "-D", "FORWARD", "1")
	processes("RemoveNetwork after Docker's change", 1, func() error { return l.fw.RemoveNetwork(m) })
	if strings.Contains(l.save(v4), "mynet:cb0000000000") {
		t.Errorf("RemoveNetwork on a stale copy left rules")
	}

	// Someone flushes one of our chains: the restore planned on the stale
	// copy fails, and the call succeeds on a fresh read.
	l.run("iptables", "-F", chIso2+"-c")
	// The failed restore drops both families' copies: restore, save, restore,
	// and a save for IPv6.
	processes("RemoveNetwork after our chain was flushed", 4, func() error { return l.fw.RemoveNetwork(n) })
	if strings.Contains(l.save(v4), "mynet:ca0000000000") {
		t.Errorf("RemoveNetwork after a flush left rules")
	}
	l.do(l.fw.Cleanup)
}

// TestMigratesOldLayout: the chains of an older layout (a chain per
// network in filter, two in nat, two isolation chains), as that version
// left them for one network with two ports, are replaced
// by the current layout: the same rules a fresh install would have.
func TestMigratesOldLayout(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "aaaaaaaaaaaa0123456789", Bridge: "myx0", ICC: false, Masquerade: true}, "198.18.10.1/24", "")
	ports := []state.PortBinding{
		{Proto: "tcp", HostPort: 8080, ContainerIP: addr("198.18.10.2"), ContainerPort: 80},
		{Proto: "udp", HostIP: addr("192.0.2.1"), HostPort: 5353, ContainerIP: addr("198.18.10.2"), ContainerPort: 53},
	}
	// Docker's rule, to be kept.
	l.run("iptables", "-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT")
	l.do(l.fw.Cleanup)
	l.restoreNoflush(oldLayout)
	// What the driver does at start: the old rules are not recognised as
	// the network's, so it adds the network and its ports again.
	var owned []string
	l.do(func() (err error) { owned, err = l.fw.Owned(); return })
	if len(owned) != 0 {
		t.Errorf("Owned after migration = %v, want none (old rules removed)", owned)
	}
	l.do(func() error { _, err := l.fw.AddNetworks([]Network{n}); return err })
	l.do(func() error { return l.fw.AddPorts(n, ports) })
	got := l.save(v4)
	for _, old := range []string{"MYNET-F-", "MYNET-S-", "MYNET-D-", "MYNET-ISO-OUT", "MYNET-ISO-IN"} {
		if strings.Contains(got, old) {
			t.Errorf("old chain %s left:\n%s", old, got)
		}
	}

	l.do(l.fw.Cleanup)
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.do(func() error { return l.fw.AddPorts(n, ports) })
	want := l.save(v4)
	if !slices.Equal(sortedRules(got), sortedRules(want)) {
		t.Errorf("migrated rules:\n%s\nfresh rules:\n%s", got, want)
	}
	if !strings.Contains(want, "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT") {
		t.Errorf("Docker's rule lost:\n%s", want)
	}
	l.do(l.fw.Cleanup)
}

// TestUpdatesRulesInPlace: the rules a network got from the version before
// this one (same chains, rules that name no owner, no drop of new connections
// into the bridge, no loopback guard, internal networks by subnet) are
// replaced when a start adds the networks again: the result is what a fresh
// install has. Published ports, whose rules did not change, stay as they are.
func TestUpdatesRulesInPlace(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "aaaaaaaaaaaa0123456789", Bridge: "myx0", ICC: false, Masquerade: true}, "198.18.10.1/24", "")
	m := l.addNetwork(Network{ID: "bbbbbbbbbbbb0123456789", Bridge: "myy0", ICC: true, Internal: true}, "198.18.11.1/24", "")
	ports := []state.PortBinding{{Proto: "tcp", HostPort: 8080, ContainerIP: addr("198.18.10.2"), ContainerPort: 80}}
	l.do(l.fw.EnsureBase)
	l.restoreNoflush(previousLayout)
	// The next start: another Firewall, which names its owner.
	var fw *Firewall
	l.do(func() (err error) {
		fw, err = NewWithConfig(nil, Config{Owner: "feed"})
		if fw != nil {
			fw.verifyCache = true
		}
		return err
	})
	var changed []string
	l.do(func() (err error) { changed, err = fw.AddNetworks([]Network{n, m}); return })
	if !slices.Equal(changed, []string{n.ID, m.ID}) {
		t.Errorf("AddNetworks changed %v, want both networks", changed)
	}
	runs := fw.v4.runs
	l.do(func() error { return fw.AddPorts(n, ports) })
	if fw.v4.runs != runs {
		t.Errorf("the published port was programmed again")
	}
	got := l.save(v4)
	l.do(func() (err error) { changed, err = fw.AddNetworks([]Network{n, m}); return })
	if len(changed) != 0 {
		t.Errorf("a second AddNetworks changed %v", changed)
	}

	l.do(fw.Cleanup)
	l.do(func() error { return fw.AddNetwork(n) })
	l.do(func() error { return fw.AddNetwork(m) })
	l.do(func() error { return fw.AddPorts(n, ports) })
	if want := l.save(v4); !slices.Equal(sortedRules(got), sortedRules(want)) {
		t.Errorf("updated rules:\n%s\nfresh rules:\n%s", got, want)
	}
	if !strings.Contains(got, `--comment "mynet:aaaaaaaaaaaa@feed"`) {
		t.Errorf("the network's rules do not name their owner:\n%s", got)
	}
	l.do(fw.Cleanup)
}

// previousLayout is what the version before this one added to the base
// chains for network aaaaaaaaaaaa on myx0 (ICC off, one published port) and
// internal network bbbbbbbbbbbb on myy0.
const previousLayout = `*filter
-A MYNET-FORWARD-a -o myx0 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "mynet:aaaaaaaaaaaa" -j ACCEPT
-A MYNET-FORWARD-a -i myx0 -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j DROP
-A MYNET-FORWARD-a -i myx0 ! -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j ACCEPT
-A MYNET-ISO-1-a -i myx0 ! -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-ISO-2
-A MYNET-ISO-2-a -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j DROP
-A MYNET-FORWARD-b -i myy0 -o myy0 -m comment --comment "mynet:bbbbbbbbbbbb" -j ACCEPT
-A MYNET-FORWARD-b ! -d 198.18.11.0/24 -i myy0 -m comment --comment "mynet:bbbbbbbbbbbb" -j DROP
-A MYNET-FORWARD-b ! -s 198.18.11.0/24 -o myy0 -m comment --comment "mynet:bbbbbbbbbbbb" -j DROP
-A MYNET-ISO-1-b -i myy0 ! -o myy0 -m comment --comment "mynet:bbbbbbbbbbbb" -j MYNET-ISO-2
-A MYNET-ISO-2-b -o myy0 -m comment --comment "mynet:bbbbbbbbbbbb" -j DROP
COMMIT
*nat
-A MYNET-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "mynet:aaaaaaaaaaaa" -j DNAT --to-destination 198.18.10.2:80
-A MYNET-POSTROUTING-a -s 198.18.10.0/24 ! -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MASQUERADE
-A MYNET-POSTROUTING-a -s 198.18.10.0/24 -o myx0 -m conntrack --ctstate DNAT -m comment --comment "mynet:aaaaaaaaaaaa" -j MASQUERADE
-A MYNET-POSTROUTING-a -s 127.0.0.0/8 -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MASQUERADE
COMMIT
`

// oldLayout is iptables-save of that older version's rules for network
// aaaaaaaaaaaa on myx0 (ICC off) with two published ports.
const oldLayout = `*filter
:MYNET-F-aaaaaaaaaaaa - [0:0]
:MYNET-FORWARD - [0:0]
:MYNET-ISO-IN - [0:0]
:MYNET-ISO-OUT - [0:0]
-A FORWARD -m comment --comment mynet -j MYNET-FORWARD
-A MYNET-F-aaaaaaaaaaaa -i myx0 ! -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-ISO-OUT
-A MYNET-F-aaaaaaaaaaaa ! -i myx0 -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-ISO-IN
-A MYNET-F-aaaaaaaaaaaa -o myx0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "mynet:aaaaaaaaaaaa" -j ACCEPT
-A MYNET-F-aaaaaaaaaaaa -o myx0 -m conntrack --ctstate DNAT -m comment --comment "mynet:aaaaaaaaaaaa" -j ACCEPT
-A MYNET-F-aaaaaaaaaaaa -i myx0 -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j DROP
-A MYNET-F-aaaaaaaaaaaa -i myx0 ! -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j ACCEPT
-A MYNET-FORWARD -i myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-F-aaaaaaaaaaaa
-A MYNET-FORWARD -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-F-aaaaaaaaaaaa
-A MYNET-ISO-IN -i docker+ -m comment --comment mynet -j DROP
-A MYNET-ISO-IN -i br-+ -m comment --comment mynet -j DROP
-A MYNET-ISO-IN -i myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j DROP
-A MYNET-ISO-OUT -o docker+ -m comment --comment mynet -j DROP
-A MYNET-ISO-OUT -o br-+ -m comment --comment mynet -j DROP
-A MYNET-ISO-OUT -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j DROP
COMMIT
*nat
:MYNET-D-aaaaaaaaaaaa - [0:0]
:MYNET-DNAT - [0:0]
:MYNET-POSTROUTING - [0:0]
:MYNET-S-aaaaaaaaaaaa - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment mynet -j MYNET-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment mynet -j MYNET-DNAT
-A POSTROUTING -m comment --comment mynet -j MYNET-POSTROUTING
-A MYNET-D-aaaaaaaaaaaa -p tcp -m tcp --dport 8080 -m comment --comment "mynet:aaaaaaaaaaaa" -j DNAT --to-destination 198.18.10.2:80
-A MYNET-D-aaaaaaaaaaaa -d 192.0.2.1/32 -p udp -m udp --dport 5353 -m comment --comment "mynet:aaaaaaaaaaaa" -j DNAT --to-destination 198.18.10.2:53
-A MYNET-DNAT -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-D-aaaaaaaaaaaa
-A MYNET-POSTROUTING -m comment --comment "mynet:aaaaaaaaaaaa" -j MYNET-S-aaaaaaaaaaaa
-A MYNET-S-aaaaaaaaaaaa -s 198.18.10.0/24 ! -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MASQUERADE
-A MYNET-S-aaaaaaaaaaaa -s 198.18.10.0/24 -o myx0 -m conntrack --ctstate DNAT -m comment --comment "mynet:aaaaaaaaaaaa" -j MASQUERADE
-A MYNET-S-aaaaaaaaaaaa -s 127.0.0.0/8 -o myx0 -m comment --comment "mynet:aaaaaaaaaaaa" -j MASQUERADE
COMMIT
`

// TestTwoFirewallsShareChains: two mynet instances in one namespace, the
// second started before the first made any chain. The second's copy of the
// ruleset lacks the chains the first made since; creating them again must
// fail and be planned on a fresh read, never empty the first's chains.
func TestTwoFirewallsShareChains(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "a20000000000", Bridge: "myp0", ICC: true, Masquerade: true}, "198.18.50.1/24", "")
	m := l.addNetwork(Network{ID: "a30000000000", Bridge: "myq0", ICC: true, Masquerade: true}, "198.18.51.1/24", "")
	var other *Firewall
	l.do(func() (err error) { other, err = New(nil); return })
	l.do(func() error { _, err := other.OwnedNetworks(); return err }) // its start reads the ruleset
	l.do(func() error { return l.fw.AddNetwork(n) })
	mine := strings.Count(l.save(v4), "mynet:a20000000000")
	l.do(func() error { return other.AddNetwork(m) })
	if got := strings.Count(l.save(v4), "mynet:a20000000000"); got != mine {
		t.Errorf("the other instance's AddNetwork left %d of the first's %d rules", got, mine)
	}
	if got := strings.Count(l.save(v4), "mynet:a30000000000"); got == 0 {
		t.Errorf("the other instance's network has no rules")
	}
	l.do(l.fw.Cleanup)
}
