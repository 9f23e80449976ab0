package driver

import (
	"log/slog"
	"net/netip"
	"sync"

	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
	"github.com/vishvananda/netns"
)

// A connection mynet's rules accepted skips them after its first packet
// (firewall.AcceptedMark). So when a bridge of ours comes (a new network, or
// a bridge made again) and routes its subnets here, the marked flows from or
// to those subnets are forgotten once the network's rules are in place: a
// connection that went out through the uplink before must not go on into
// the network unchecked.

// earlierFlows lists the subnets of recs whose backend has firewall rules.
func (d *Driver) earlierFlows(recs ...state.Network) []netip.Prefix {
	var subnets []netip.Prefix
	for _, rec := range recs {
		if d.backend(rec.Backend).hasRules() {
			subnets = append(subnets, fwNetwork(rec).Subnets...)
		}
	}
	return subnets
}

// forgetEarlierFlows forgets them at once, on the calling thread (a start,
// a repair). A failure (no conntrack netlink in this kernel) is only
// logged: without conntrack no connection carries the mark.
func (d *Driver) forgetEarlierFlows(recs ...state.Network) {
	if subnets := d.earlierFlows(recs...); len(subnets) > 0 {
		if err := link.FlushMarkedConntrack(subnets, firewall.AcceptedMark); err != nil {
			d.log.Warn("forget earlier flows of the networks' subnets", "networks", len(recs), "err", err)
		}
	}
}

// flowForgetter forgets a new network's earlier flows in the background:
// the kernel walks its whole conntrack hash for each dump (about 12 ms),
// too much to add to every CreateNetwork, and nothing reaches a container
// of the network before its first Join, which waits for it.
type flowForgetter struct {
	ns    netns.NsHandle // where the driver works, whichever thread runs this
	log   *slog.Logger
	flush func(ns netns.NsHandle, subnets []netip.Prefix, mark uint32) error // link.FlushMarkedConntrackIn

	mu      sync.Mutex
	pending map[string]chan struct{} // network id -> closed once forgotten
	wg      sync.WaitGroup
}

func newFlowForgetter(log *slog.Logger) (*flowForgetter, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, err
	}
	return &flowForgetter{ns: ns, log: log, flush: link.FlushMarkedConntrackIn, pending: map[string]chan struct{}{}}, nil
}

// forget starts forgetting the marked flows of network id's subnets.
func (f *flowForgetter) forget(id string, subnets []netip.Prefix) {
	if len(subnets) == 0 {
		return
	}
	done := make(chan struct{})
	f.mu.Lock()
	f.pending[id] = done
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		if err := f.flush(f.ns, subnets, firewall.AcceptedMark); err != nil {
			f.log.Warn("forget earlier flows of a new network's subnets", "network", id, "err", err)
		}
		f.mu.Lock()
		if f.pending[id] == done {
			delete(f.pending, id)
		}
		f.mu.Unlock()
		close(done)
	}()
}

// wait returns once network id's earlier flows are forgotten.
func (f *flowForgetter) wait(id string) {
	f.mu.Lock()
	done := f.pending[id]
	f.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (f *flowForgetter) close() {
	f.wg.Wait()
	f.ns.Close()
}
