//go:build integration

package integration

// Our iptables rules as the tests read and break them: rule lines, the
// DNAT rules of published ports, host ports held or free, and what a
// reboot wipes.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// e2eRuleLines is `TOOL` output without comments and counters, each rule
// line prefixed with its table.
func e2eRuleLines(tool string) []string {
	out, err := exec.Command(tool).Output()
	if err != nil {
		return []string{"ERROR " + tool + ": " + err.Error()}
	}
	var lines []string
	table := ""
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		default:
			lines = append(lines, table+": "+strings.TrimSpace(reCounters.ReplaceAllString(l, "")))
		}
	}
	return lines
}

var reDNAT = regexp.MustCompile(`-p (\w+) .*--dport (\d+) .*--to-destination ([0-9a-f.:\[\]]+):(\d+)`)

// e2eDNAT is one DNAT rule of ours.
type e2eDNAT struct {
	proto    string
	hostPort int
	dest     string // "ip:port"
	line     string
}

func e2eDNATRules() []e2eDNAT {
	var rs []e2eDNAT
	for _, l := range e2eRuleLines("iptables-save") {
		if !strings.HasPrefix(l, "nat: -A MYNET-DNAT ") || !strings.Contains(l, "-j DNAT") {
			continue
		}
		if m := reDNAT.FindStringSubmatch(l); m != nil {
			p, _ := strconv.Atoi(m[2])
			rs = append(rs, e2eDNAT{proto: m[1], hostPort: p, dest: m[3] + ":" + m[4], line: l})
		}
	}
	return rs
}

// e2eHostPortsTo are the host ports our DNAT rules send to ip:cport.
func e2eHostPortsTo(proto string, ip netip.Addr, cport int) []int {
	var ps []int
	want := fmt.Sprintf("%s:%d", ip, cport)
	for _, r := range e2eDNATRules() {
		if r.proto == proto && r.dest == want {
			ps = append(ps, r.hostPort)
		}
	}
	return ps
}

// e2eDNATFor are our DNAT rules for a host port.
func e2eDNATFor(proto string, port int) []string {
	var ls []string
	for _, r := range e2eDNATRules() {
		if r.proto == proto && r.hostPort == port {
			ls = append(ls, r.line)
		}
	}
	return ls
}

// e2eHeld reports whether a socket on the host holds proto/port (ss -l).
func e2eHeld(t testing.TB, proto string, port int) bool {
	t.Helper()
	flag := "-Hltn"
	if proto == "udp" {
		flag = "-Hlun"
	}
	out, err := exec.Command("ss", flag).Output()
	if err != nil {
		t.Fatalf("ss %s: %v", flag, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && strings.HasSuffix(f[3], fmt.Sprintf(":%d", port)) {
			return true
		}
	}
	return false
}

// e2ePortFree reports whether proto/port can be bound on all addresses and
// no rule of ours uses it.
func e2ePortFree(proto string, port int) bool {
	if len(e2eDNATFor(proto, port)) > 0 {
		return false
	}
	for _, nw := range []string{proto + "4", proto + "6"} {
		addr := fmt.Sprintf(":%d", port)
		if proto == "udp" {
			c, err := net.ListenPacket(nw, addr)
			if err != nil {
				return false
			}
			c.Close()
		} else {
			l, err := net.Listen(nw, addr)
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}

// e2eFreePorts returns the first of n consecutive free host ports (tcp and
// udp), below the ephemeral range.
func e2eFreePorts(t testing.TB, n int) int {
	t.Helper()
next:
	for try := 0; try < 200; try++ {
		start := 20000 + rand.IntN(9000)
		for p := start; p < start+n; p++ {
			if !e2ePortFree("tcp", p) || !e2ePortFree("udp", p) {
				continue next
			}
		}
		return start
	}
	t.Fatalf("no %d free consecutive host ports found", n)
	return 0
}

func e2eFreePort(t testing.TB) int { t.Helper(); return e2eFreePorts(t, 1) }

// e2eIPT runs iptables/ip6tables and fails the test on error.
func e2eIPT(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// e2eWipeOurFirewall deletes what a reboot deletes: every jump to a MYNET
// chain and every MYNET chain, in iptables and ip6tables. With only set, it
// deletes just those networks' rules and chains (another mynet instance is
// alive and keeps the shared chains).
func e2eWipeOurFirewall(t *testing.T, only map[string]bool) {
	t.Helper()
	ours := func(rule string) bool {
		if only == nil {
			return strings.Contains(rule, "-j MYNET-") || strings.Contains(rule, "mynet")
		}
		for id := range only {
			if strings.Contains(rule, id) {
				return true
			}
		}
		return false
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat"} {
			out := e2eIPT(t, tool, "-t", table, "-S")
			var chains []string
			rulesOf := map[string][]string{}
			var order []string
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) < 2 {
					continue
				}
				switch f[0] {
				case "-N":
					if strings.HasPrefix(f[1], "MYNET-") {
						chains = append(chains, f[1])
					}
				case "-A":
					if _, ok := rulesOf[f[1]]; !ok {
						order = append(order, f[1])
					}
					rulesOf[f[1]] = append(rulesOf[f[1]], l)
				}
			}
			// Delete matching rules by number, last first.
			for _, ch := range order {
				rs := rulesOf[ch]
				for i := len(rs) - 1; i >= 0; i-- {
					if ours(rs[i]) && (only != nil || !strings.HasPrefix(ch, "MYNET-")) {
						e2eIPT(t, tool, "-t", table, "-D", ch, strconv.Itoa(i+1))
					}
				}
			}
			for _, ch := range chains {
				if only != nil && !ours(ch) {
					continue
				}
				e2eIPT(t, tool, "-t", table, "-F", ch)
			}
			for _, ch := range chains {
				if only != nil && !ours(ch) {
					continue
				}
				e2eIPT(t, tool, "-t", table, "-X", ch)
			}
		}
	}
}

// e2eFirstRules returns the first rule of each built-in chain we jump from.
func e2eFirstRules() map[string]string {
	m := map[string]string{}
	for _, c := range []struct{ table, chain string }{{"filter", "FORWARD"}, {"nat", "PREROUTING"}, {"nat", "OUTPUT"}, {"nat", "POSTROUTING"}} {
		out, _ := exec.Command("iptables", "-t", c.table, "-S", c.chain).Output()
		for _, l := range strings.Split(string(out), "\n") {
			// Our FORWARD jump goes right after Docker's DOCKER-USER jump.
			if strings.HasPrefix(l, "-A ") && l != "-A FORWARD -j DOCKER-USER" {
				m[c.table+"/"+c.chain] = l
				break
			}
		}
	}
	return m
}
