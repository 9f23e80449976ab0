package timing

import (
	"testing"
	"time"
)

// A lone span owns the counters' growth: time reported to Bbolt during it
// shows up in its Bbolt share and nowhere else.
func TestLoneSpanGetsItsBboltTime(t *testing.T) {
	span := Begin()
	Since(Bbolt, time.Now().Add(-2*time.Millisecond))
	r := span.End()
	if !r.Alone || r.Parts.Bbolt < 2*time.Millisecond || r.Parts.Iptables != 0 || r.Parts.Netlink != 0 {
		t.Fatalf("lone span: %+v", r)
	}
	attrs := r.LogAttrs()
	if len(attrs) != 8 || attrs[0] != "took" || attrs[2] != "netlink" || attrs[4] != "iptables" || attrs[6] != "bbolt" {
		t.Fatalf("log attrs: %v", attrs)
	}
}

// Spans that overlap in any way are both marked, and claim nothing.
func TestOverlappingSpansAreMarked(t *testing.T) {
	// b begins inside a and ends inside it.
	a := Begin()
	b := Begin()
	if r := b.End(); r.Alone || r.Parts != (Split{}) {
		t.Fatalf("inner span alone: %+v", r)
	}
	if r := a.End(); r.Alone {
		t.Fatalf("outer span alone: %+v", r)
	}
	// b begins inside a and ends after it.
	a, b = Begin(), Begin()
	ra, rb := a.End(), b.End()
	if ra.Alone || rb.Alone {
		t.Fatalf("staggered spans alone: %+v %+v", ra, rb)
	}
	if got := ra.LogAttrs(); len(got) != 4 || got[2] != "parts" || got[3] != "overlapped" {
		t.Fatalf("overlapped log attrs: %v", got)
	}
	// One after the other: each alone again.
	if r := Begin().End(); !r.Alone {
		t.Fatalf("span after the others ended: %+v", r)
	}
	if inFlight.Load() != 0 {
		t.Fatalf("in flight after all ended: %d", inFlight.Load())
	}
}
