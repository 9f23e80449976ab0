package firewall

import (
	"testing"

	"github.com/mynet/mynet/timing"
)

// The iptables processes of a call report to timing: EnsureBase after someone
// else changed the ruleset runs one iptables-save per family.
func TestIptablesRunsReportToTiming(t *testing.T) {
	l := newLab(t)
	l.do(l.fw.EnsureBase)
	l.run("iptables", "-N", "SOMEONE-ELSE")
	before, runs := timing.Cumulative().Iptables, l.runs()
	l.do(l.fw.EnsureBase)
	if l.runs() == runs || timing.Cumulative().Iptables <= before {
		t.Fatalf("EnsureBase: %d processes, Spent %v -> %v", l.runs()-runs, before, timing.Cumulative().Iptables)
	}
	l.do(l.fw.Cleanup)
	l.run("iptables", "-X", "SOMEONE-ELSE")
}
