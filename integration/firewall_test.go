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
	"time"
)

// ruleLines is `TOOL` output without comments and counters, each rule
// line prefixed with its table.
func ruleLines(tool string) []string {
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

// dnatRule is one DNAT rule of ours.
type dnatRule struct {
	proto    string
	hostPort int
	dest     string // "ip:port"
	line     string
}

func dnatRules() []dnatRule {
	var rs []dnatRule
	for _, l := range ruleLines("iptables-save") {
		if !strings.HasPrefix(l, "nat: -A MYNET-DNAT ") || !strings.Contains(l, "-j DNAT") {
			continue
		}
		if m := reDNAT.FindStringSubmatch(l); m != nil {
			p, _ := strconv.Atoi(m[2])
			rs = append(rs, dnatRule{proto: m[1], hostPort: p, dest: m[3] + ":" + m[4], line: l})
		}
	}
	return rs
}

// hostPortsTo are the host ports our DNAT rules send to ip:cport.
func hostPortsTo(proto string, ip netip.Addr, cport int) []int {
	var ps []int
	want := fmt.Sprintf("%s:%d", ip, cport)
	for _, r := range dnatRules() {
		if r.proto == proto && r.dest == want {
			ps = append(ps, r.hostPort)
		}
	}
	return ps
}

// dnatFor are our DNAT rules for a host port.
func dnatFor(proto string, port int) []string {
	var ls []string
	for _, r := range dnatRules() {
		if r.proto == proto && r.hostPort == port {
			ls = append(ls, r.line)
		}
	}
	return ls
}

// portHeld reports whether a socket on the host holds proto/port (ss -l).
func portHeld(t testing.TB, proto string, port int) bool {
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

// stopUnpublishes stops container ctr, which publishes host port
// proto/port, and checks that within 5 s no DNAT rule of ours is left for
// the port and no socket holds it.
func stopUnpublishes(t *testing.T, ctr, proto string, port int) error {
	t.Helper()
	mustDocker(t, "stop", "-t", "1", ctr)
	return eventually(5*time.Second, func() error {
		if ls := dnatFor(proto, port); len(ls) > 0 {
			return fmt.Errorf("DNAT rules for host port %d/%s remain after the container stopped: %v", port, proto, ls)
		}
		if portHeld(t, proto, port) {
			return fmt.Errorf("host port %d/%s is still held after the container stopped", port, proto)
		}
		return nil
	})
}

// portFree reports whether proto/port can be bound on all addresses and
// no rule of ours uses it.
func portFree(proto string, port int) bool {
	if len(dnatFor(proto, port)) > 0 {
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

// freePorts returns the first of n consecutive free host ports (tcp and
// udp), below the ephemeral range.
func freePorts(t testing.TB, n int) int {
	t.Helper()
next:
	for try := 0; try < 200; try++ {
		start := 20000 + rand.IntN(9000)
		for p := start; p < start+n; p++ {
			if !portFree("tcp", p) || !portFree("udp", p) {
				continue next
			}
		}
		return start
	}
	t.Fatalf("no %d free consecutive host ports found", n)
	return 0
}

func freePort(t testing.TB) int { t.Helper(); return freePorts(t, 1) }

// wipeOurFirewall deletes what a reboot deletes: every jump to a MYNET
// chain and every MYNET chain, in iptables and ip6tables. With only set, it
// deletes just those networks' rules and chains (another mynet instance is
// alive and keeps the shared chains).
func wipeOurFirewall(t *testing.T, only map[string]bool) {
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
		for _, table := range []string{"raw", "filter", "nat"} {
			out := mustRun(t, tool, "-t", table, "-S")
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
						mustRun(t, tool, "-t", table, "-D", ch, strconv.Itoa(i+1))
					}
				}
			}
			for _, ch := range chains {
				if only != nil && !ours(ch) {
					continue
				}
				mustRun(t, tool, "-t", table, "-F", ch)
			}
			for _, ch := range chains {
				if only != nil && !ours(ch) {
					continue
				}
				mustRun(t, tool, "-t", table, "-X", ch)
			}
		}
	}
}

// firstRules returns the first rule of each built-in chain we jump from.
func firstRules() map[string]string {
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
