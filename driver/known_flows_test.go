package driver

import (
	"net"
	"testing"

	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// udpFlow puts a tracked UDP flow from src:sport to dst:53 in the kernel's
// table, with the given connection mark.
func udpFlow(t *testing.T, src string, sport uint16, dst string, mark uint32) {
	t.Helper()
	f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, Mark: mark, TimeOut: 120,
		Forward: netlink.IPTuple{SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(), Protocol: unix.IPPROTO_UDP, SrcPort: sport, DstPort: 53},
		Reverse: netlink.IPTuple{SrcIP: net.ParseIP(dst).To4(), DstIP: net.ParseIP(src).To4(), Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: sport}}
	if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		t.Fatalf("create conntrack entry %s:%d -> %s: %v", src, sport, dst, err)
	}
}

// flowPorts returns the source ports of the tracked UDP flows to port 53.
func flowPorts(t *testing.T) map[uint16]bool {
	t.Helper()
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16]bool{}
	for _, f := range flows {
		if f.Forward.Protocol == unix.IPPROTO_UDP && f.Forward.DstPort == 53 {
			out[f.Forward.SrcPort] = true
		}
	}
	return out
}

const netC = "cccccccccccc3333333333333333333333333333333333333333333333333333"

// A connection our rules accepted skips them after its first packet unless
// it goes between two bridges the firewall knows by name (mn-...). So a
// network whose bridge has a name of the user's forgets, when it is made or
// its bridge made again, the marked flows of its subnet, and only those.
func TestNamedBridgeNetworkForgetsEarlierAcceptedFlows(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.65.0.0/24", "10.65.0.1/24", nil)
		mark := firewall.AcceptedMark
		udpFlow(t, "10.65.0.2", 4000, "10.66.0.5", mark) // into the subnet to come
		udpFlow(t, "10.66.0.6", 4001, "192.0.2.9", mark) // from it
		udpFlow(t, "10.65.0.2", 4002, "10.66.0.7", 0)    // someone else's
		udpFlow(t, "10.65.0.2", 4003, "192.0.2.9", mark) // elsewhere
		e.createNetwork(netB, "10.66.0.0/24", "10.66.0.1/24", map[string]any{optBridgeName: "usrflows0"})
		if got, want := flowPorts(t), map[uint16]bool{4002: true, 4003: true}; !equalSets(got, want) {
			t.Errorf("after creating the network: flows from ports %v, want %v", got, want)
		}

		// The bridge goes (by hand) and comes back at the next start.
		if err := link.Delete("usrflows0"); err != nil {
			t.Fatal(err)
		}
		udpFlow(t, "10.65.0.2", 4004, "10.66.0.8", mark)
		e.restart()
		if got, want := flowPorts(t), map[uint16]bool{4002: true, 4003: true}; !equalSets(got, want) {
			t.Errorf("after the bridge was made again: flows from ports %v, want %v", got, want)
		}
		// A plain restart forgets nothing, and neither does a network whose
		// bridge the firewall knows by name (isolation catches such flows).
		udpFlow(t, "10.65.0.2", 4005, "10.66.0.9", mark)
		udpFlow(t, "10.65.0.2", 4006, "10.67.0.9", mark)
		e.restart()
		e.createNetwork(netC, "10.67.0.0/24", "10.67.0.1/24", nil)
		if got := flowPorts(t); !got[4005] || !got[4006] {
			t.Errorf("flows from ports %v, want 4005 and 4006 kept", got)
		}
		e.deleteNetworks(netA, netB, netC)
		e.assertNoLeftovers()
	})
}

func equalSets(a, b map[uint16]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
