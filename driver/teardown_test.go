package driver

import (
	"net"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/link"
	"github.com/vishvananda/netlink"
)

// With async teardown on, DeleteEndpoint and DeleteNetwork answer before the
// kernel has freed the links, yet: the record is gone at once, the network's
// subnet is unreachable at once, the same ids come back at once without a
// clash, the orphan search does not take links on their way out for orphans,
// and Close leaves nothing behind.
func TestAsyncTeardown(t *testing.T) {
	inNetns(t, func(e *env) {
		e.d.SetAsyncTeardown(true)
		const bridge = "mn-aaaaaaaaaaaa"
		for round := 0; round < 3; round++ {
			e.createNetwork(netA, "10.61.0.0/24", "10.61.0.1/24", nil)
			if l, err := netlink.LinkByName(bridge); err != nil || l.Attrs().Flags&net.FlagUp == 0 {
				t.Fatalf("round %d: bridge after create: %v %v", round, l, err)
			}
			for i := 0; i < 3; i++ {
				e.createEndpoint(netA, ep1, "10.61.0.2/24")
				// Docker takes the container's end back and down before
				// DeleteEndpoint.
				if err := link.SetDown(containerIfName(ep1)); err != nil {
					t.Fatal(err)
				}
				if err := e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: netA, EndpointID: ep1}); err != nil {
					t.Fatal(err)
				}
				if _, ok := e.d.lookupEndpoint(ep1); ok {
					t.Fatal("endpoint still known after DeleteEndpoint")
				}
				if os := e.d.findOrphans(survey{}); len(os) > 0 {
					t.Fatalf("links being deleted taken for orphans: %v", os[0].drift)
				}
			}
			if err := e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: netA}); err != nil {
				t.Fatal(err)
			}
			// Unreachable at once: no route into the subnet through the old bridge.
			if rs, err := netlink.RouteGet(net.ParseIP("10.61.0.2")); err == nil {
				for _, r := range rs {
					if l, _ := netlink.LinkByIndex(r.LinkIndex); l != nil && l.Attrs().Name == bridge {
						t.Fatalf("round %d: route into the deleted network's subnet still via %s", round, bridge)
					}
				}
			}
			if os := e.d.findOrphans(survey{}); len(os) > 0 {
				t.Fatalf("a bridge being deleted taken for an orphan: %v", os[0].drift)
			}
		}
		e.d.Close()
		e.assertNoLeftovers()
		if ok, _ := link.Exists(bridge); ok {
			t.Fatal("bridge left after Close")
		}
	})
}
