package firewall

import "testing"

// The iptables processes of a call add to Spent: EnsureBase after someone
// else changed the ruleset runs one iptables-save per family.
func TestIptablesRunsAddToSpent(t *testing.T) {
	l := newLab(t)
	l.do(l.fw.EnsureBase)
	l.run("iptables", "-N", "SOMEONE-ELSE")
	before, runs := Spent(), l.runs()
	l.do(l.fw.EnsureBase)
	if l.runs() == runs || Spent() <= before {
		t.Fatalf("EnsureBase: %d processes, Spent %v -> %v", l.runs()-runs, before, Spent())
	}
	l.do(l.fw.Cleanup)
	l.run("iptables", "-X", "SOMEONE-ELSE")
}
