package link

import (
	"testing"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/vishvananda/netlink"
)

func TestDumpLinksAgreesWithLinkList(t *testing.T) {
	testutil.InNetns(t, func() { checkDumpLinks(t) })
}

func checkDumpLinks(t *testing.T) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "dbr0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Error(err)
		return
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dv0", MasterIndex: 0}, PeerName: "dv1"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Error(err)
		return
	}
	if err := netlink.LinkSetMaster(veth, br); err != nil {
		t.Error(err)
		return
	}
	masters, err := Masters()
	if err != nil {
		t.Error(err)
		return
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Error(err)
		return
	}
	if len(masters) != len(links) {
		t.Errorf("Masters has %d links, LinkList %d", len(masters), len(links))
	}
	for _, l := range links {
		want := ""
		if mi := l.Attrs().MasterIndex; mi != 0 {
			m, err := netlink.LinkByIndex(mi)
			if err != nil {
				t.Error(err)
				return
			}
			want = m.Attrs().Name
		}
		if got, ok := masters[l.Attrs().Name]; !ok || got != want {
			t.Errorf("link %s: master %q (listed %v), want %q", l.Attrs().Name, got, ok, want)
		}
	}
	if masters["dv0"] != "dbr0" {
		t.Errorf("dv0's master = %q, want dbr0", masters["dv0"])
	}
}
