package firewall

import (
	"net/netip"
	"strconv"
	"strings"
)

type family int

const (
	v4 family = iota
	v6
)

func (f family) String() string {
	if f == v6 {
		return "IPv6"
	}
	return "IPv4"
}

func familyOf(a netip.Addr) family {
	if a.Is6() {
		return v6
	}
	return v4
}

const (
	tFilter = "filter"
	tNat    = "nat"

	// Shared chains, created by EnsureBase.
	chForward = "MYNET-FORWARD"     // filter, jumped from FORWARD (rule 1)
	chIsoOut  = "MYNET-ISO-OUT"     // filter, "output is another bridge" drops
	chIsoIn   = "MYNET-ISO-IN"      // filter, "input is another bridge" drops
	chDNAT    = "MYNET-DNAT"        // nat, jumped from PREROUTING and OUTPUT (rule 1)
	chPost    = "MYNET-POSTROUTING" // nat, jumped from POSTROUTING (rule 1)

	// Per-network chains: prefix + the first 12 characters of the network id
	// (20 characters, within iptables' 28-character limit).
	pfxFilter = "MYNET-F-" // filter: forwarding policy of one bridge
	pfxSNAT   = "MYNET-S-" // nat: masquerade rules of one bridge
	pfxPorts  = "MYNET-D-" // nat: DNAT rules of the published ports of one network

	chainPrefix   = "MYNET-"
	commentBase   = "mynet"  // comment of rules that belong to no network
	commentPrefix = "mynet:" // + 12-char network id
)

// DefaultForeignBridges are the interface patterns (iptables syntax, "+" is a
// trailing wildcard) of the bridges of Docker's own bridge driver: docker0,
// docker_gwbridge and br-<12 hex>. Our bridges are isolated from them.
var DefaultForeignBridges = []string{"docker+", "br-+"}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func netComment(id12 string) string { return commentPrefix + id12 }

func isPerNetChain(name string) bool {
	return strings.HasPrefix(name, pfxFilter) || strings.HasPrefix(name, pfxSNAT) || strings.HasPrefix(name, pfxPorts)
}

// chainRef names a chain of a table.
type chainRef struct{ table, name string }

func perNetChains(id12 string) []chainRef {
	return []chainRef{
		{tFilter, pfxFilter + id12},
		{tNat, pfxSNAT + id12},
		{tNat, pfxPorts + id12},
	}
}

// mk builds a rule: the matches, then the comment (where iptables-save
// prints it), then the target.
func mk(tbl, ch, comment string, match []string, target ...string) rule {
	args := make([]string, 0, len(match)+len(target)+4)
	args = append(args, match...)
	args = append(args, "-m", "comment", "--comment", comment)
	args = append(args, "-j")
	args = append(args, target...)
	return rule{table: tbl, chain: ch, args: args}
}

// baseJumps are the jumps from the built-in chains; each must be rule 1 of its
// built-in chain.
func baseJumps() []rule {
	return []rule{
		mk(tFilter, "FORWARD", commentBase, nil, chForward),
		mk(tNat, "PREROUTING", commentBase, []string{"-m", "addrtype", "--dst-type", "LOCAL"}, chDNAT),
		mk(tNat, "OUTPUT", commentBase, []string{"-m", "addrtype", "--dst-type", "LOCAL"}, chDNAT),
		mk(tNat, "POSTROUTING", commentBase, nil, chPost),
	}
}

func baseChains() []chainRef {
	return []chainRef{
		{tFilter, chForward}, {tFilter, chIsoOut}, {tFilter, chIsoIn},
		{tNat, chDNAT}, {tNat, chPost},
	}
}

// baseIsolation are the drops against the foreign (Docker) bridges.
func baseIsolation(foreign []string) []rule {
	var rs []rule
	for _, p := range foreign {
		rs = append(rs, mk(tFilter, chIsoOut, commentBase, []string{"-o", p}, "DROP"))
	}
	for _, p := range foreign {
		rs = append(rs, mk(tFilter, chIsoIn, commentBase, []string{"-i", p}, "DROP"))
	}
	return rs
}

// netRules is the wanted state of one network in one family.
type netRules struct {
	// owned: per-network chains whose whole content we define, in order.
	owned []ownedChain
	// ports: the per-network DNAT chain; created if missing, its content is
	// managed by AddPorts/RemovePorts.
	ports *ownedChain
	// shared: rules in shared chains (jumps into the per-network chains and
	// isolation drops); added if missing.
	shared []rule
}

type ownedChain struct {
	table, name string
	rules       []rule
}

// buildNetRules returns the rules of network n for family fam; subnets are
// n's subnets of that family (at least one).
func buildNetRules(n *Network, fam family, subnets []netip.Prefix) netRules {
	id12 := shortID(n.ID)
	c := netComment(id12)
	br := n.Bridge
	fch := pfxFilter + id12

	f := ownedChain{table: tFilter, name: fch}
	add := func(match []string, target ...string) {
		f.rules = append(f.rules, mk(tFilter, fch, c, match, target...))
	}
	// Isolation first: nothing below may accept a packet between two
	// different bridges of ours or between ours and Docker's.
	add([]string{"-i", br, "!", "-o", br}, chIsoOut)
	add([]string{"-o", br, "!", "-i", br}, chIsoIn)
	icc := "DROP"
	if n.ICC {
		icc = "ACCEPT"
	}
	if !n.Internal {
		add([]string{"-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, "ACCEPT")
		// Published ports: any connection that our DNAT rules sent to this
		// bridge (from outside, from the host, or hairpin from the bridge
		// itself, even with ICC off). A direct, non-translated connection to
		// a container port is not accepted here.
		add([]string{"-o", br, "-m", "conntrack", "--ctstate", "DNAT"}, "ACCEPT")
		add([]string{"-i", br, "-o", br}, icc)
		add([]string{"-i", br, "!", "-o", br}, "ACCEPT")
	} else {
		add([]string{"-i", br, "-o", br}, icc)
		if len(subnets) == 1 {
			s := subnets[0].String()
			add([]string{"!", "-d", s, "-i", br}, "DROP")
			add([]string{"!", "-s", s, "-o", br}, "DROP")
		} else {
			for _, p := range subnets {
				add([]string{"-d", p.String(), "-i", br}, "RETURN")
				add([]string{"-s", p.String(), "-o", br}, "RETURN")
			}
			add([]string{"-i", br}, "DROP")
			add([]string{"-o", br}, "DROP")
		}
	}

	nr := netRules{owned: []ownedChain{f}}
	nr.shared = append(nr.shared,
		mk(tFilter, chForward, c, []string{"-i", br}, fch),
		mk(tFilter, chForward, c, []string{"-o", br}, fch),
		mk(tFilter, chIsoOut, c, []string{"-o", br}, "DROP"),
		mk(tFilter, chIsoIn, c, []string{"-i", br}, "DROP"),
	)
	if n.Internal {
		return nr
	}

	sch := pfxSNAT + id12
	s := ownedChain{table: tNat, name: sch}
	for _, p := range subnets {
		if n.Masquerade {
			s.rules = append(s.rules, mk(tNat, sch, c, []string{"-s", p.String(), "!", "-o", br}, "MASQUERADE"))
		}
	}
	for _, p := range subnets {
		// Hairpin: a container reaching a published port of its own network
		// through a host address; the target must answer through the host.
		s.rules = append(s.rules, mk(tNat, sch, c, []string{"-s", p.String(), "-o", br, "-m", "conntrack", "--ctstate", "DNAT"}, "MASQUERADE"))
	}
	if fam == v4 {
		// 127.0.0.1:HOSTPORT from the host (needs route_localnet on br).
		s.rules = append(s.rules, mk(tNat, sch, c, []string{"-s", "127.0.0.0/8", "-o", br}, "MASQUERADE"))
	}
	nr.owned = append(nr.owned, s)
	nr.ports = &ownedChain{table: tNat, name: pfxPorts + id12}
	nr.shared = append(nr.shared,
		mk(tNat, chPost, c, nil, sch),
		mk(tNat, chDNAT, c, nil, pfxPorts+id12),
	)
	return nr
}

// portRule is the DNAT rule of one published port.
func portRule(id12 string, p PortMapping) rule {
	var match []string
	if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
		match = append(match, "-d", netip.PrefixFrom(p.HostIP, p.HostIP.BitLen()).String())
	}
	match = append(match, "-p", p.Proto, "-m", p.Proto, "--dport", strconv.Itoa(int(p.HostPort)))
	to := netip.AddrPortFrom(p.ContainerIP, p.ContainerPort).String()
	return mk(tNat, pfxPorts+id12, netComment(id12), match, "DNAT", "--to-destination", to)
}

// parsedPort is what conflict detection needs from a DNAT rule we find.
type parsedPort struct {
	proto  string
	hostIP string // "" = any
	port   string
	to     string
}

func parsePortRule(toks []string) (parsedPort, bool) {
	var pp parsedPort
	var ok bool
	if pp.proto, ok = optValue(toks, "-p"); !ok {
		return pp, false
	}
	if pp.port, ok = optValue(toks, "--dport"); !ok {
		return pp, false
	}
	if pp.to, ok = optValue(toks, "--to-destination"); !ok {
		return pp, false
	}
	if d, ok := optValue(toks, "-d"); ok {
		pp.hostIP = strings.TrimSuffix(strings.TrimSuffix(d, "/32"), "/128")
	}
	return pp, true
}
