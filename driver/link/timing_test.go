package link

import (
	"testing"

	"github.com/mynet/mynet/timing"
)

// A read-only netlink call (the loopback link every namespace has) adds to
// the netlink counter.
func TestKernelCallsReportToTiming(t *testing.T) {
	before := timing.Cumulative().Netlink
	if ok, err := Exists("lo"); err != nil || !ok {
		t.Fatalf("lo: %v %v", ok, err)
	}
	if timing.Cumulative().Netlink <= before {
		t.Fatalf("Spent did not grow: %v -> %v", before, timing.Cumulative().Netlink)
	}
}
