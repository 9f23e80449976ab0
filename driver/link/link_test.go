package link

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestValidName(t *testing.T) {
	for _, ok := range []string{"mn-0123456789ab", "br0", "eth1.10", "a_b"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0123456789abcdef", "a b", "a/b", "..", "-j\nACCEPT", "x:y"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// deleteTwice deletes a link, and again: the second finds it gone, which
// is fine too.
func deleteTwice(t *testing.T, name string) {
	t.Helper()
	for i := 0; i < 2; i++ {
		if err := Delete(name); err != nil {
			t.Fatal(err)
		}
	}
}

// absent fails the test if any of the links exists.
func absent(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if ok, _ := Exists(n); ok {
			t.Fatalf("%s left behind", n)
		}
	}
}

func TestBridgeAndAddressesAreIdempotent(t *testing.T) {
	testutil.InNetns(t, func() {
		br, created, err := SetUpBridge("tbr0", 1400, nil)
		if err != nil || !created {
			t.Fatalf("first ensure: created=%v err=%v", created, err)
		}
		_, created, err = SetUpBridge("tbr0", 1400, nil)
		if err != nil || created {
			t.Fatalf("second ensure: created=%v err=%v", created, err)
		}
		l, _ := netlink.LinkByName("tbr0")
		if l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("bridge mtu=%d flags=%v", l.Attrs().MTU, l.Attrs().Flags)
		}
		gw := netip.MustParsePrefix("10.77.0.1/24")
		for i := 0; i < 2; i++ {
			if added, err := br.EnsureAddr(gw); err != nil || added != (i == 0) {
				t.Fatalf("ensure %d: added=%v err=%v", i, added, err)
			}
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.0.1/24" {
			t.Fatalf("addresses %v", addrs)
		}
		for i := 0; i < 2; i++ {
			if err := DelAddr("tbr0", gw); err != nil {
				t.Fatal(err)
			}
		}
		deleteTwice(t, "tbr0")
		absent(t, "tbr0")
	})
}

func TestSetUpBridgeRefusesOtherLinkTypes(t *testing.T) {
	testutil.InNetns(t, func() {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "tv0"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "tv1"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := SetUpBridge("tv0", 0, nil); err == nil {
			t.Fatal("a veth was accepted as a bridge")
		}
	})
}

func TestVethOnBridge(t *testing.T) {
	testutil.InNetns(t, func() {
		if _, _, err := SetUpBridge("tbr1", 0, nil); err != nil {
			t.Fatal(err)
		}
		mac, _ := net.ParseMAC("02:42:0a:4d:00:02")
		if err := CreateVeth(Veth{Host: "th0", Peer: "tc0", Bridge: "tbr1", MTU: 1300, PeerMAC: mac}); err != nil {
			t.Fatal(err)
		}
		host, _ := netlink.LinkByName("th0")
		peer, _ := netlink.LinkByName("tc0")
		if host.Attrs().MTU != 1300 || peer.Attrs().MTU != 1300 {
			t.Fatalf("MTU host=%d peer=%d", host.Attrs().MTU, peer.Attrs().MTU)
		}
		if peer.Attrs().HardwareAddr.String() != mac.String() {
			t.Fatalf("peer MAC %s", peer.Attrs().HardwareAddr)
		}
		if m, _ := Master("th0"); m != "tbr1" {
			t.Fatalf("host end master %q", m)
		}
		if host.Attrs().Flags&net.FlagUp == 0 {
			t.Fatal("host end is down")
		}
		// Deleting one end removes both.
		deleteTwice(t, "th0")
		absent(t, "tc0")
	})
}

func TestVethFailureLeavesNothing(t *testing.T) {
	testutil.InNetns(t, func() {
		if err := CreateVeth(Veth{Host: "th1", Peer: "tc1", Bridge: "nosuchbr"}); err == nil {
			t.Fatal("veth on a missing bridge succeeded")
		}
		if _, _, err := SetUpBridge("tbr2", 0, nil); err != nil {
			t.Fatal(err)
		}
		// MTU the kernel refuses: the pair must be rolled back.
		if err := CreateVeth(Veth{Host: "th2", Peer: "tc2", Bridge: "tbr2", MTU: 70000}); err == nil {
			t.Fatal("impossible MTU accepted")
		}
		absent(t, "th1", "tc1", "th2", "tc2")
	})
}

func TestFlushConntrackRemovesFlowsOfOneAddress(t *testing.T) {
	testutil.InNetns(t, func() {
		mk := func(src, dst string) *netlink.ConntrackFlow {
			return &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 100,
				Forward: netlink.IPTuple{SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(), Protocol: unix.IPPROTO_UDP, SrcPort: 1000, DstPort: 53},
				Reverse: netlink.IPTuple{SrcIP: net.ParseIP(dst).To4(), DstIP: net.ParseIP(src).To4(), Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: 1000}}
		}
		for _, f := range []*netlink.ConntrackFlow{mk("10.80.0.2", "10.80.0.9"), mk("10.80.0.3", "10.80.0.9")} {
			if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
				t.Fatalf("create flow: %v", err)
			}
		}
		if err := FlushConntrack(netip.MustParseAddr("10.80.0.2")); err != nil {
			t.Fatal(err)
		}
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		if len(flows) != 1 || flows[0].Forward.SrcIP.String() != "10.80.0.3" {
			t.Fatalf("flows left: %v", flows)
		}
	})
}

// A port with a lower MAC than the bridge's must not change the bridge's
// MAC: containers cache it as their gateway's.
func TestBridgeKeepsItsMACWhenPortsJoin(t *testing.T) {
	testutil.InNetns(t, func() {
		low, _ := net.ParseMAC("02:00:00:00:00:01")
		macOf := func(name string) string {
			l, err := netlink.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			return l.Attrs().HardwareAddr.String()
		}
		addLowPort := func(bridge, host string) {
			t.Helper()
			attrs := netlink.NewLinkAttrs()
			attrs.Name, attrs.HardwareAddr = host, low
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: host + "p"}); err != nil {
				t.Fatal(err)
			}
			l, _ := netlink.LinkByName(host)
			br, _ := netlink.LinkByName(bridge)
			if err := Attach(l, br); err != nil {
				t.Fatal(err)
			}
		}

		// The kernel's choice, which the rest guards against: a bridge
		// without an address of its own takes its lowest port's.
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "tbrk"
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			t.Fatal(err)
		}
		addLowPort("tbrk", "tk0")
		if got := macOf("tbrk"); got != low.String() {
			t.Fatalf("a bridge without an address of its own has %s, want its port's %s (has the kernel changed?)", got, low)
		}

		if _, _, err := SetUpBridge("tbr3", 0, nil); err != nil {
			t.Fatal(err)
		}
		before := macOf("tbr3")
		addLowPort("tbr3", "tp0")
		if got := macOf("tbr3"); got != before {
			t.Errorf("SetUpBridge's bridge: MAC %s became %s when a port joined", before, got)
		}

		// A bridge made again with the same MAC has the address it had.
		mac := StableMAC("net-a")
		if StableMAC("net-a").String() != mac.String() || StableMAC("net-b").String() == mac.String() || mac[0]&0x03 != 0x02 {
			t.Fatalf("StableMAC: %s for net-a, %s for net-b: want one locally administered unicast address per seed", mac, StableMAC("net-b"))
		}
		for i := 0; i < 2; i++ {
			if _, _, err := SetUpBridge("tbr5", 0, mac); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				addLowPort("tbr5", "tr0")
			}
			if got := macOf("tbr5"); got != mac.String() {
				t.Errorf("bridge made with %s has %s", mac, got)
			}
			if err := Delete("tbr5"); err != nil {
				t.Fatal(err)
			}
		}

		// An older bridge, pinned: the address it has now stays.
		attrs = netlink.NewLinkAttrs()
		attrs.Name = "tbr4"
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			t.Fatal(err)
		}
		before = macOf("tbr4")
		for i := 0; i < 2; i++ {
			if err := PinBridgeMAC("tbr4"); err != nil {
				t.Fatal(err)
			}
		}
		addLowPort("tbr4", "tq0")
		if got := macOf("tbr4"); got != before {
			t.Errorf("pinned bridge: MAC %s became %s when a port joined", before, got)
		}
		if err := PinBridgeMAC("nosuchbr"); err == nil {
			t.Error("pinning a missing bridge succeeded")
		}
	})
}
