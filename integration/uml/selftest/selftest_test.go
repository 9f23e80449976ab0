//go:build umltest

// Package selftest proves that integration/uml/run.sh gives Go tests a kernel with the
// link types this machine's own kernel lacks: dummy, ipvlan (l2 and l3), macvlan and
// 802.1q VLAN. It is built only with -tags umltest and is meant to run inside UML
// (integration/uml/selftest.sh). On a kernel without those link types it fails; it never
// skips.
package selftest

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// newNS makes a fresh network namespace and a netlink handle inside it, without leaving
// the calling thread in it. Both are closed when the test ends (the namespace disappears
// with its last reference, and with it every link the test made there).
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New() // moves this thread into the new namespace
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of running
		// other goroutines in the wrong namespace.
		ns.Close()
		t.Fatalf("back to the original netns: %v", err)
	}
	runtime.UnlockOSThread()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatalf("netlink handle in the new netns: %v", err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	return ns, h
}

func addLink(t *testing.T, h *netlink.Handle, l netlink.Link) {
	t.Helper()
	if err := h.LinkAdd(l); err != nil {
		t.Fatalf("add %s link %q: %v", l.Type(), l.Attrs().Name, err)
	}
}

// get returns the link called name, which must have kernel type typ.
func get(t *testing.T, h *netlink.Handle, name, typ string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %q: %v", name, err)
	}
	if l.Type() != typ {
		t.Fatalf("link %q has type %q, want %q", name, l.Type(), typ)
	}
	return l
}

func ipvlanMode(t *testing.T, h *netlink.Handle, name string) netlink.IPVlanMode {
	t.Helper()
	l, ok := get(t, h, name, "ipvlan").(*netlink.IPVlan)
	if !ok {
		t.Fatalf("link %q: netlink gave %T, want *netlink.IPVlan", name, l)
	}
	return l.Mode
}

func TestKernelLinkTypes(t *testing.T) {
	if os.Getenv("UML_GUEST") == "" {
		t.Log("UML_GUEST is not set: not running under integration/uml/run.sh")
	}
	_, h := newNS(t)

	addLink(t, h, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}})
	parent := get(t, h, "dummy0", "dummy")
	if err := h.LinkSetUp(parent); err != nil {
		t.Fatalf("set dummy0 up: %v", err)
	}
	pidx := parent.Attrs().Index

	// One parent holds ipvlans of one mode only and not macvlans as well (see
	// TestParentRules), so: dummy0 carries the l2 ipvlan and the VLAN dummy0.10, the
	// macvlan sits on dummy0.10 (as Docker's macvlan driver does with parent=eth0.10), and
	// the l3 ipvlan gets dummy1.
	addLink(t, h, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "dummy1"}})
	p1idx := get(t, h, "dummy1", "dummy").Attrs().Index

	addLink(t, h, &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "ipvl2", ParentIndex: pidx}, Mode: netlink.IPVLAN_MODE_L2})
	addLink(t, h, &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "ipvl3", ParentIndex: p1idx}, Mode: netlink.IPVLAN_MODE_L3})
	addLink(t, h, &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "dummy0.10", ParentIndex: pidx}, VlanId: 10, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q})
	vidx := get(t, h, "dummy0.10", "vlan").Attrs().Index
	addLink(t, h, &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "macv0", ParentIndex: vidx}, Mode: netlink.MACVLAN_MODE_BRIDGE})

	if m := ipvlanMode(t, h, "ipvl2"); m != netlink.IPVLAN_MODE_L2 {
		t.Errorf("ipvl2 mode %v, want l2", m)
	}
	if m := ipvlanMode(t, h, "ipvl3"); m != netlink.IPVLAN_MODE_L3 {
		t.Errorf("ipvl3 mode %v, want l3", m)
	}
	mv, ok := get(t, h, "macv0", "macvlan").(*netlink.Macvlan)
	if !ok {
		t.Fatalf("macv0 is not a *netlink.Macvlan")
	}
	if mv.Mode != netlink.MACVLAN_MODE_BRIDGE {
		t.Errorf("macv0 mode %v, want bridge", mv.Mode)
	}
	vl, ok := get(t, h, "dummy0.10", "vlan").(*netlink.Vlan)
	if !ok {
		t.Fatalf("dummy0.10 is not a *netlink.Vlan")
	}
	if vl.VlanId != 10 || vl.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		t.Errorf("dummy0.10: id %d protocol %v, want 10 802.1q", vl.VlanId, vl.VlanProtocol)
	}
	for name, want := range map[string]int{"ipvl2": pidx, "dummy0.10": pidx, "ipvl3": p1idx, "macv0": vidx} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("link %q: %v", name, err)
		}
		if got := l.Attrs().ParentIndex; got != want {
			t.Errorf("%s: parent index %d, want %d", name, got, want)
		}
	}

	// Move the l2 ipvlan into a second namespace, as the driver does with a container's
	// sandbox, and find it there.
	ns2, h2 := newNS(t)
	if err := h.LinkSetNsFd(get(t, h, "ipvl2", "ipvlan"), int(ns2)); err != nil {
		t.Fatalf("move ipvl2 to another netns: %v", err)
	}
	if m := ipvlanMode(t, h2, "ipvl2"); m != netlink.IPVLAN_MODE_L2 {
		t.Errorf("ipvl2 in the second netns: mode %v, want l2", m)
	}
	if _, err := h.LinkByName("ipvl2"); err == nil {
		t.Errorf("ipvl2 still in the first netns after the move")
	}

	// Delete everything, children first, and check it is gone.
	for _, c := range []struct {
		h    *netlink.Handle
		name string
	}{{h2, "ipvl2"}, {h, "ipvl3"}, {h, "macv0"}, {h, "dummy0.10"}, {h, "dummy1"}, {h, "dummy0"}} {
		l, err := c.h.LinkByName(c.name)
		if err != nil {
			t.Errorf("before delete, %s: %v", c.name, err)
			continue
		}
		if err := c.h.LinkDel(l); err != nil {
			t.Errorf("delete %s: %v", c.name, err)
			continue
		}
		var nf netlink.LinkNotFoundError
		if _, err := c.h.LinkByName(c.name); !errors.As(err, &nf) {
			t.Errorf("after delete, %s: got %v, want link not found", c.name, err)
		}
	}
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Errorf("left behind: %s (%s)", l.Attrs().Name, l.Type())
		}
	}
}

// TestIPVlanOnVeth puts ipvlan and macvlan links on a veth parent, the kind of parent
// the backend's tests use (never eth0). Only veth and macvlan exist in this machine's own
// kernel, so outside UML this test fails on the ipvlan, which shows the check is real.
func TestIPVlanOnVeth(t *testing.T) {
	_, h := newNS(t)
	addLink(t, h, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"})
	addLink(t, h, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth2"}, PeerName: "veth3"})
	v0 := get(t, h, "veth0", "veth").Attrs().Index
	v2 := get(t, h, "veth2", "veth").Attrs().Index
	addLink(t, h, &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "macv0", ParentIndex: v2}, Mode: netlink.MACVLAN_MODE_BRIDGE})
	addLink(t, h, &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "ipvl0", ParentIndex: v0}, Mode: netlink.IPVLAN_MODE_L2})
	if m := ipvlanMode(t, h, "ipvl0"); m != netlink.IPVLAN_MODE_L2 {
		t.Errorf("ipvl0 mode %v, want l2", m)
	}
	get(t, h, "macv0", "macvlan")
	for _, name := range []string{"veth0", "veth2"} { // each takes its peer and children along
		if err := h.LinkDel(get(t, h, name, "veth")); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	for _, name := range []string{"veth1", "veth3", "ipvl0", "macv0"} {
		if _, err := h.LinkByName(name); err == nil {
			t.Errorf("%s still exists after its veth was deleted", name)
		}
	}
}

// TestParentRules pins down two kernel facts the macvlan/ipvlan backend must respect:
// the ipvlan mode belongs to the parent's ipvlan port, so adding an l3 ipvlan to a parent
// that has an l2 one switches both to l3; and a parent with ipvlans takes no macvlan
// (EBUSY: both want the parent's rx handler).
func TestParentRules(t *testing.T) {
	_, h := newNS(t)
	addLink(t, h, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}})
	pidx := get(t, h, "dummy0", "dummy").Attrs().Index
	addLink(t, h, &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "a", ParentIndex: pidx}, Mode: netlink.IPVLAN_MODE_L2})
	addLink(t, h, &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "b", ParentIndex: pidx}, Mode: netlink.IPVLAN_MODE_L3})
	if ma, mb := ipvlanMode(t, h, "a"), ipvlanMode(t, h, "b"); ma != netlink.IPVLAN_MODE_L3 || mb != netlink.IPVLAN_MODE_L3 {
		t.Errorf("modes after adding an l3 ipvlan next to an l2 one: a=%v b=%v, want both l3", ma, mb)
	}
	err := h.LinkAdd(&netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "m", ParentIndex: pidx}, Mode: netlink.MACVLAN_MODE_BRIDGE})
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("macvlan on a parent with ipvlans: got %v, want EBUSY", err)
	}
	if err := h.LinkDel(get(t, h, "dummy0", "dummy")); err != nil { // takes its ipvlans along
		t.Fatalf("delete dummy0: %v", err)
	}
	for _, name := range []string{"a", "b", "m"} {
		if _, err := h.LinkByName(name); err == nil {
			t.Errorf("%s still exists after its parent was deleted", name)
		}
	}
}
