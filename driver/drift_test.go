package driver

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func kinds(ds []drift.Drift) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		m[d.Kind]++
	}
	return m
}

// Doctor against a hand-made Docker view: what Docker lacks, what the kernel
// lacks, what no record claims; --fix repairs each and a second look is clean.
func TestDoctorFindsAndFixes(t *testing.T) {
	inNetns(t, func(e *env) {
		const ep1 = "e1e1e1e1e1e1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		const ep2 = "e2e2e2e2e2e2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		e.createNetwork(netA, "10.61.0.0/24", "10.61.0.1/24", nil)
		e.createNetwork(netB, "10.62.0.0/24", "10.62.0.1/24", nil)
		e.createEndpoint(netA, ep1, "10.61.0.2/24")
		e.createEndpoint(netA, ep2, "10.61.0.3/24")
		// Docker knows network A with ep1 only; network B not at all.
		view := drift.View{FetchedAt: time.Now().Add(time.Minute), Networks: map[string]drift.Network{
			netA: {Name: "a", Endpoints: map[string]drift.Endpoint{ep1: {Container: "c1"}}},
		}}
		// The kernel lost A's bridge; a marked link nobody claims appeared.
		if err := link.Delete("mn-aaaaaaaaaaaa"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := link.SetUpBridge("mn-0123456789ab", 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := link.SetAlias("mn-0123456789ab", e.d.owner); err != nil {
			t.Fatal(err)
		}

		// Young records are left alone whatever Docker says.
		young := view
		young.FetchedAt = time.Now()
		if k := kinds(e.d.Doctor(young, true, nil, time.Hour)); k[drift.NetworkUnknownToDocker]+k[drift.EndpointUnknownToDocker] != 0 {
			t.Errorf("records younger than the grace were judged: %v", k)
		}

		ds := e.d.Doctor(view, true, nil, 0)
		k := kinds(ds)
		if k[drift.NetworkUnknownToDocker] != 1 || k[drift.EndpointUnknownToDocker] != 1 || k[drift.LinksMissing] != 1 || k[drift.OrphanLink] != 1 {
			t.Fatalf("drift: %+v", ds)
		}
		for _, d := range ds {
			if d.Fixed {
				t.Errorf("fixed without fix: %+v", d)
			}
		}
		if ok, _ := link.Exists("mn-0123456789ab"); !ok {
			t.Fatal("doctor without fix removed a link")
		}

		for _, d := range e.d.Doctor(view, true, drift.FixAll, 0) {
			if !d.Fixed {
				t.Errorf("not fixed: %+v", d)
			}
		}
		if ds := e.d.Doctor(view, true, nil, 0); len(ds) != 0 {
			t.Errorf("after fix: %+v", ds)
		}
		if ok, _ := link.Exists("mn-aaaaaaaaaaaa"); !ok {
			t.Error("bridge of network A not re-created")
		}
		if m, _ := link.Master(hostIfName(ep1)); m != "mn-aaaaaaaaaaaa" {
			t.Errorf("ep1's veth is on %q after the repair", m)
		}
		for _, gone := range []string{"mn-bbbbbbbbbbbb", hostIfName(ep2), "mn-0123456789ab"} {
			if ok, _ := link.Exists(gone); ok {
				t.Errorf("%s still exists", gone)
			}
		}
		if _, ok := e.d.lookupNetwork(netB); ok {
			t.Error("network B still recorded")
		}
	})
}

// Endpoints being created have links before records: doctor --fix running
// at the same time must not take them for orphans.
func TestDoctorLeavesCallsInFlightAlone(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.63.0.0/24", "10.63.0.1/24", nil)
		done := make(chan struct{})
		var fixed []drift.Drift
		ns, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		go func() {
			defer close(done)
			// In the test's namespace too; the thread ends with the goroutine.
			runtime.LockOSThread()
			if err := netns.Set(ns); err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 20; i++ {
				for _, d := range e.d.Doctor(drift.View{}, false, drift.FixAll, 0) {
					fixed = append(fixed, d)
				}
			}
		}()
		var ids []string
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("%012x%052d", 0xe0000+i, 0)
			ids = append(ids, id)
			e.createEndpoint(netA, id, fmt.Sprintf("10.63.0.%d/24", 10+i))
		}
		<-done
		if len(fixed) > 0 {
			t.Errorf("doctor acted during creates: %+v", fixed)
		}
		for _, id := range ids {
			if ok, _ := link.Exists(hostIfName(id)); !ok {
				t.Errorf("veth of endpoint %s is gone", protocol.Short(id))
			}
		}
	})
}

// A container's host veth taken off its bridge (by hand, by another tool)
// cuts the container off: doctor reports it and --fix puts it back as a
// start does.
func TestDoctorFindsDetachedVeth(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.63.0.0/24", "10.63.0.1/24", nil)
		e.createEndpoint(netA, ep1, "10.63.0.2/24")
		veth, err := netlink.LinkByName(hostIfName(ep1))
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetNoMaster(veth); err != nil {
			t.Fatal(err)
		}
		ds := e.d.Doctor(drift.View{}, false, nil, 0)
		if len(ds) != 1 || ds[0].Kind != drift.EndpointDetached || ds[0].Object != "endpoint "+ep1[:12] {
			t.Fatalf("doctor: %+v, want the detached veth", ds)
		}
		ds = e.d.Doctor(drift.View{}, false, drift.FixAll, 0)
		if len(ds) != 1 || !ds[0].Fixed {
			t.Errorf("doctor --fix: %+v", ds)
		}
		if m, _ := link.Master(hostIfName(ep1)); m != "mn-aaaaaaaaaaaa" {
			t.Errorf("veth on %q after doctor --fix", m)
		}
		if got := e.repaired(); got[RepairEndpointAttach] != 1 {
			t.Errorf("OnRepair heard %v, want one re-attach", got)
		}
		if ds := e.d.Doctor(drift.View{}, false, nil, 0); len(ds) != 0 {
			t.Errorf("doctor after the fix: %+v", ds)
		}
	})
}
