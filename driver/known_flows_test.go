package driver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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

// A connection our rules accepted skips them after its first packet, so a
// flow that reached an address through the uplink must not go on into the
// network that later has that address: creating the network, or making its
// bridge again, forgets the marked flows of its subnet, and only those.
func TestNewNetworkForgetsEarlierAcceptedFlows(t *testing.T) {
	inNetns(t, func(e *env) {
		// Flows go in the background, here slowly; a network's first Join
		// waits for them.
		flush := e.d.flows.flush
		e.d.flows.flush = func(ns netns.NsHandle, subnets []netip.Prefix, mark uint32) error {
			time.Sleep(300 * time.Millisecond)
			return flush(ns, subnets, mark)
		}
		e.createNetwork(netA, "10.65.0.0/24", "10.65.0.1/24", nil)
		e.d.flows.wait(netA) // as its first Join would
		mark := firewall.AcceptedMark
		udpFlow(t, "10.65.0.2", 4000, "10.66.0.5", mark) // into the subnet to come
		udpFlow(t, "10.66.0.6", 4001, "192.0.2.9", mark) // from it
		udpFlow(t, "10.65.0.2", 4002, "10.66.0.7", 0)    // someone else's
		udpFlow(t, "10.65.0.2", 4003, "192.0.2.9", mark) // elsewhere
		e.createNetwork(netB, "10.66.0.0/24", "10.66.0.1/24", nil)
		e.createEndpoint(netB, ep1, "10.66.0.2/24")
		if _, err := e.d.Join(&api.JoinRequest{NetworkID: netB, EndpointID: ep1}); err != nil {
			t.Fatal(err)
		}
		if got, want := flowPorts(t), map[uint16]bool{4002: true, 4003: true}; !equalSets(got, want) {
			t.Errorf("once the network's first Join answered: flows from ports %v, want %v", got, want)
		}
		if err := e.d.Leave(&api.LeaveRequest{NetworkID: netB, EndpointID: ep1}); err != nil {
			t.Fatal(err)
		}
		if err := e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: netB, EndpointID: ep1}); err != nil {
			t.Fatal(err)
		}

		// The bridge goes (by hand) and comes back at the next start.
		if err := link.Delete("mn-bbbbbbbbbbbb"); err != nil {
			t.Fatal(err)
		}
		udpFlow(t, "10.65.0.2", 4004, "10.66.0.8", mark)
		e.restart()
		if got, want := flowPorts(t), map[uint16]bool{4002: true, 4003: true}; !equalSets(got, want) {
			t.Errorf("after the bridge was made again: flows from ports %v, want %v", got, want)
		}
		// A plain restart forgets nothing.
		udpFlow(t, "10.65.0.2", 4005, "10.66.0.9", mark)
		e.restart()
		if !flowPorts(t)[4005] {
			t.Error("a restart that made no bridge forgot a flow")
		}
		e.deleteNetworks(netA, netB)
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
