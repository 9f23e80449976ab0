// Package timing splits the time of one piece of work (a protocol call) into
// what it spent in netlink, iptables and bbolt. The packages doing that work
// report each slow call here (calls carry no context, so the counters are
// process-wide); a Span takes the difference of the counters across the
// work. It imports nothing of ours: the others report to it. The difference is
// the work's own only when nothing else ran meanwhile, so every piece of
// work, foreground or background, goes through Begin/End, and a span that
// overlapped another one says so instead of claiming the other's time.
package timing

import (
	"sync/atomic"
	"time"
)

// Part is a slow subsystem whose time is counted.
type Part int

const (
	Netlink  Part = iota // kernel calls over netlink, and /proc/sys writes
	Iptables             // iptables-save and iptables-restore processes
	Bbolt                // store transactions: waiting for the writer, the commit, the fsync
	parts
)

var spent [parts]atomic.Int64

// Since adds the time since start to part's counter:
//
//	defer timing.Since(timing.Netlink, time.Now())
//
// Each exported call of a reporting package counts itself once; they call
// each other only through unexported cores, so nothing is counted twice.
func Since(part Part, start time.Time) { spent[part].Add(int64(time.Since(start))) }

// Split is time spent in each slow subsystem.
type Split struct {
	Netlink, Iptables, Bbolt time.Duration
}

func (s Split) minus(o Split) Split {
	return Split{s.Netlink - o.Netlink, s.Iptables - o.Iptables, s.Bbolt - o.Bbolt}
}

// Cumulative reads the process-wide counters.
func Cumulative() Split {
	return Split{
		Netlink:  time.Duration(spent[Netlink].Load()),
		Iptables: time.Duration(spent[Iptables].Load()),
		Bbolt:    time.Duration(spent[Bbolt].Load()),
	}
}

var (
	inFlight atomic.Int64  // spans begun and not ended
	begun    atomic.Uint64 // spans ever begun: a change means one started meanwhile
)

// Span is one piece of work being timed.
type Span struct {
	start  time.Time
	before Split
	gen    uint64
	alone  bool // nothing else was in flight when it began
}

// Begin starts timing a piece of work.
func Begin() Span {
	gen := begun.Add(1)
	alone := inFlight.Add(1) == 1
	return Span{start: time.Now(), before: Cumulative(), gen: gen, alone: alone}
}

// Result is what a span measured. Parts is meaningful only when Alone.
type Result struct {
	Took  time.Duration
	Parts Split
	Alone bool // no other span was in flight at any time during this one
}

// End stops timing. Call it exactly once per Begin.
func (s Span) End() Result {
	r := Result{Took: time.Since(s.start), Parts: Cumulative().minus(s.before)}
	// Read before leaving: a span that begins after our End is no overlap.
	r.Alone = s.alone && begun.Load() == s.gen
	inFlight.Add(-1)
	if !r.Alone {
		r.Parts = Split{}
	}
	return r
}

// LogAttrs are the fields of a request log line: took=, then netlink=,
// iptables=, bbolt= for a lone request, or parts=overlapped.
func (r Result) LogAttrs() []any {
	if !r.Alone {
		return []any{"took", r.Took, "parts", "overlapped"}
	}
	return []any{"took", r.Took, "netlink", r.Parts.Netlink, "iptables", r.Parts.Iptables, "bbolt", r.Parts.Bbolt}
}
