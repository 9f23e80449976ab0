package firewall

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// packets returns the packet counter of the one rule of chain whose text
// (as iptables-save prints it, after "-A CHAIN ") contains every part; a
// part that starts with "=" is the whole text.
func (l *lab) packets(chain string, parts ...string) int {
	l.t.Helper()
	re := regexp.MustCompile(`^\[(\d+):\d+\] -A (\S+) (.*)$`)
	found, n := 0, 0
	for _, line := range strings.Split(l.run("iptables-save", "-c", "-t", "filter"), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil || m[2] != chain {
			continue
		}
		all := true
		for _, p := range parts {
			if whole, ok := strings.CutPrefix(p, "="); ok {
				all = all && m[3] == whole
			} else {
				all = all && strings.Contains(m[3], p)
			}
		}
		if all {
			found++
			n, _ = strconv.Atoi(m[1])
		}
	}
	if found != 1 {
		l.t.Fatalf("%d rules in %s with %q, want 1", found, chain, parts)
	}
	return n
}

// pingFrom pings to from ns count times, quickly.
func pingFrom(ns netns.NsHandle, to string, count int) error {
	return inNS(ns, func() error {
		out, err := exec.Command("busybox", "ping", "-c", strconv.Itoa(count), "-i", "0.01", "-W", "2", to).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s: %w: %s", to, err, out)
		}
		return nil
	})
}

// TestKnownConnectionsSkipTheWalk: once our rules accepted a connection's
// first packet, the rest of it (both directions) is accepted by MYNET-KNOWN
// and never walks the isolation chains or the network's shard again.
func TestKnownConnectionsSkipTheWalk(t *testing.T) {
	k := newKindsLab(t)
	l := k.lab
	l.do(l.fw.EnsureBase)
	l.do(func() error { return l.fw.AddNetwork(k.netA) })
	// B has ICC off: its rules make bridged frames cross iptables
	// (bridge-nf-call-iptables), as Docker leaves a host, A's frames too.
	l.do(func() error { return l.fw.AddNetwork(k.netB) })
	l.policy("DROP") // what gets through, our rules let through

	const pings = 20
	if err := pingFrom(k.a1.ns, "192.0.2.2", pings); err != nil {
		t.Fatal(err)
	}
	shardA := shardChain(chForward, 'a')
	if got := l.packets(shardA, "-i mn-a00000000000 ", "-j "+chAccept); got != 1 {
		t.Errorf("the network's outbound accept saw %d packets of %d echo requests, want only the first", got, pings)
	}
	if got := l.packets(shardA, "-o mn-a00000000000 ", "RELATED,ESTABLISHED,DNAT"); got != 0 {
		t.Errorf("the network's accept of replies saw %d packets, want 0: replies of a known connection skip the shard", got)
	}
	if got := l.packets(chKnown, "=-m comment --comment mynet -j ACCEPT"); got != 2*pings-1 {
		t.Errorf("MYNET-KNOWN accepted %d packets to and from the outside, want %d (every packet but the first)", got, 2*pings-1)
	}
	// Within the network (frames bridged through FORWARD): the rule for
	// bridged frames takes them.
	if err := pingFrom(k.a1.ns, k.a2.ip4.String(), pings); err != nil {
		t.Fatal(err)
	}
	if got := l.packets(chKnown, "--physdev-is-bridged"); got != 2*pings-1 {
		t.Errorf("MYNET-KNOWN's rule for bridged frames accepted %d packets within the network, want %d", got, 2*pings-1)
	}
	// The mark is on the connection, and only on ours: the host's own ping
	// to the outside is not forwarded and carries none.
	var marked int
	l.do(func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
		for _, f := range flows {
			if f.Mark&AcceptedMark != 0 {
				marked++
				if f.Forward.SrcIP.String() != k.a1.ip4.String() {
					t.Errorf("a connection from %s carries the mark", f.Forward.SrcIP)
				}
			}
		}
		return err
	})
	if marked != 2 {
		t.Errorf("%d marked connections, want 2", marked)
	}
	if fmt.Sprintf("%#x/%#x", AcceptedMark, AcceptedMark) != acceptedMark {
		t.Errorf("acceptedMark %q does not spell AcceptedMark %#x", acceptedMark, AcceptedMark)
	}
}

// TestKnownConnectionIntoForeignBridgeIsChecked takes the attacker's side: a
// container keeps sending on a flow our rules accepted while the address it
// goes to was outside, after Docker made a bridge network with that address.
// The flow carries the mark, but a packet to or from a Docker bridge always
// takes the whole walk, and isolation drops it (Docker's bridges come and go
// without telling us, so no flow of theirs can be forgotten in time).
func TestKnownConnectionIntoForeignBridgeIsChecked(t *testing.T) {
	l, a1 := newStaleFlowLab(t)
	// Now Docker's bridge network has that subnet, and a container on it.
	l.ip(l.hostN, "route", "del", "198.18.9.0/24", "via", "192.0.2.2")
	l.addBridge("br-0123456789ab", "198.18.9.1/24", "")
	d1 := l.addContainer("d1", "br-0123456789ab", "198.18.9.2/24", "198.18.9.1", "", "")
	inDocker := l.listenUDP(d1.ns, ":53")
	if err := sendUDPFrom(a1.ns, "198.18.1.2:4000", "198.18.9.2:53", "after"); err != nil {
		t.Fatal(err)
	}
	if inDocker.saw("after") {
		t.Error("a known flow went on into a Docker bridge network: isolation was skipped")
	}
	if got := l.packets(chIso2, "-o br-+", "-j DROP"); got == 0 {
		t.Error("MYNET-ISO-2 dropped nothing: the packet did not reach isolation")
	}
}

// markedFlow reports whether the UDP flow from src:sport carries a mark of
// ours.
func (l *lab) markedFlow(src string, sport uint16) bool {
	var marked bool
	l.do(func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
		for _, f := range flows {
			marked = marked || (f.Forward.SrcIP.String() == src && f.Forward.SrcPort == sport && f.Mark&AcceptedMark != 0)
		}
		return err
	})
	return marked
}

// TestKnownConnectionIntoNewNetworkIsChecked takes the attacker's side: a
// container of a network without masquerading keeps sending on a flow our
// rules accepted while the address it goes to was outside, after a mynet
// network with that address came. The flow now goes from one bridge of ours
// to another, which MYNET-KNOWN sends through the whole walk, and isolation
// drops it.
func TestKnownConnectionIntoNewNetworkIsChecked(t *testing.T) {
	l, a1 := newStaleFlowLab(t)
	// Now a mynet network has that subnet, and a container on it.
	l.ip(l.hostN, "route", "del", "198.18.9.0/24", "via", "192.0.2.2")
	netB := l.addNetwork(Network{ID: "b00000000000ffff", Bridge: "mn-b00000000000", ICC: true, Masquerade: true}, "198.18.9.1/24", "")
	b1 := l.addContainer("b1", "mn-b00000000000", "198.18.9.2/24", "198.18.9.1", "", "")
	inB := l.listenUDP(b1.ns, ":53")
	l.do(func() error { return l.fw.AddNetwork(netB) })
	if err := sendUDPFrom(a1.ns, "198.18.1.2:4000", "198.18.9.2:53", "after"); err != nil {
		t.Fatal(err)
	}
	if inB.saw("after") {
		t.Error("a flow accepted before the network came went on into it: isolation was skipped")
	}

	if got := l.packets(shardChain(chIso2, 'b'), "-o mn-b00000000000", "-j DROP"); got == 0 {
		t.Error("the new network's isolation dropped nothing: the packet did not reach it")
	}
}

// newStaleFlowLab is the start of an attack on known connections: network A
// (mn-a..., 198.18.1.0/24, without masquerading: the kernel itself drops a
// masqueraded flow's packet when its output interface changes) with
// container a1, the FORWARD policy at ACCEPT (whatever is refused, our
// rules refuse), and a1's datagram from port 4000 to 198.18.9.2:53, a host
// behind the uplink, accepted and marked.
func newStaleFlowLab(t *testing.T) (*lab, *ctr) {
	t.Helper()
	l := newLab(t)
	netA := l.addNetwork(Network{ID: "a00000000000ffff", Bridge: "mn-a00000000000", ICC: true, Masquerade: false}, "198.18.1.1/24", "")
	a1 := l.addContainer("a1", "mn-a00000000000", "198.18.1.2/24", "198.18.1.1", "", "")
	l.do(l.fw.EnsureBase)
	l.do(func() error { return l.fw.AddNetwork(netA) })
	l.policy("ACCEPT")
	l.ip(l.prefix+"-o", "addr", "add", "198.18.9.2/32", "dev", "eth0")
	l.ip(l.hostN, "route", "add", "198.18.9.0/24", "via", "192.0.2.2")
	outside := l.listenUDP(l.out, "198.18.9.2:53")
	if err := sendUDPFrom(a1.ns, "198.18.1.2:4000", "198.18.9.2:53", "before"); err != nil {
		t.Fatal(err)
	}
	if !outside.saw("before") || !l.markedFlow("198.18.1.2", 4000) {
		t.Fatal("the container's datagram to the outside did not arrive as a marked flow: the test would prove nothing")
	}
	return l, a1
}
