package firewall

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// watch runs WatchRuleset in the lab's host namespace until the test ends,
// calling changed after each commit there.
func (l *lab) watch(changed func()) {
	l.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inNS(l.host, func() error { return WatchRuleset(ctx, changed) }) }()
	l.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			l.t.Errorf("WatchRuleset: %v", err)
		}
	})
}

// forwardTargets lists the targets of FORWARD's rules in order.
func (l *lab) forwardTargets() []string {
	var out []string
	for _, line := range strings.Split(l.run("iptables", "-S", "FORWARD"), "\n") {
		if i := strings.Index(line, " -j "); i >= 0 && strings.HasPrefix(line, "-A FORWARD") {
			out = append(out, strings.Fields(line[i+4:])[0]+":"+strings.TrimSpace(line[len("-A FORWARD"):i]))
		}
	}
	return out
}

// TestWatchRulesetFollowsOthersCommits: every commit by another process is
// announced, and a stopped watch returns.
func TestWatchRulesetFollowsOthersCommits(t *testing.T) {
	l := newLab(t)
	calls := make(chan struct{}, 100)
	l.watch(func() { calls <- struct{}{} })
	// The subscription is made in the watch's own goroutine: commit until
	// one is seen, then each further commit must be.
	seen := false
	for try := 0; try < 20 && !seen; try++ {
		l.run("iptables", "-N", fmt.Sprintf("WATCH-%d", try))
		select {
		case <-calls:
			seen = true
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !seen {
		t.Fatal("no call after 20 commits by iptables")
	}
	for range len(calls) {
		<-calls
	}
	l.run("ip6tables", "-N", "WATCH-V6")
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Error("no call after an ip6tables commit")
	}
}

// TestDockerRulesAboveOursDoNotStay: Docker 20.10 inserts its accepts for a
// new bridge network at the top of FORWARD; with the watch calling
// EnsureBase (what the driver does), ours are back on top without waiting
// for a periodic check, and that network's containers cannot reach ours.
func TestDockerRulesAboveOursDoNotStay(t *testing.T) {
	l := newLab(t)
	n := l.addNetwork(Network{ID: "d10000000000ffff", Bridge: "myw0", ICC: true, Masquerade: true}, "198.18.61.1/24", "")
	l.addBridge("br-0123456789ab", "198.18.62.1/24", "")
	ours := l.addContainer("w1", "myw0", "198.18.61.2/24", "198.18.61.1", "", "")
	theirs := l.addContainer("w2", "br-0123456789ab", "198.18.62.2/24", "198.18.62.1", "", "")
	l.serve(ours.ns, 80)
	l.do(func() error { return l.fw.AddNetwork(n) })
	l.policy("ACCEPT")
	l.watch(func() {
		if err := inNS(l.host, l.fw.EnsureBase); err != nil {
			t.Errorf("EnsureBase: %v", err)
		}
	})

	// What Docker 20.10 adds for br-0123456789ab, each at the top.
	l.run("iptables", "-I", "FORWARD", "-i", "br-0123456789ab", "-o", "br-0123456789ab", "-j", "ACCEPT")
	l.run("iptables", "-I", "FORWARD", "-i", "br-0123456789ab", "!", "-o", "br-0123456789ab", "-j", "ACCEPT")
	l.run("iptables", "-I", "FORWARD", "-o", "br-0123456789ab", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

	deadline := time.Now().Add(10 * time.Second)
	for {
		ts := l.forwardTargets()
		if len(ts) > 0 && strings.HasPrefix(ts[0], chForward+":") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FORWARD %v: our jump is not back on top", ts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.check(probe{"Docker's network -> ours", theirs.ns, hp(ours.ip4, 80), ""})
}
