package firewall

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
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
	tRaw    = "raw"

	// Shared chains, created by EnsureBase (and by any call that needs them).
	chForward  = "MYNET-FORWARD"     // filter, jumped from FORWARD (first, or right after DOCKER-USER)
	chIso1     = "MYNET-ISO-1"       // filter, rule 2 of MYNET-FORWARD: "leaves bridge X for another interface"
	chIso2     = "MYNET-ISO-2"       // filter, from MYNET-ISO-1: "... and that interface is another bridge": DROP
	chDNAT     = "MYNET-DNAT"        // nat, jumped from PREROUTING and OUTPUT (rule 1): published ports
	chPost     = "MYNET-POSTROUTING" // nat, jumped from POSTROUTING (rule 1): masquerading
	chLoopback = "MYNET-LOOPBACK"    // raw (IPv4), jumped from PREROUTING (rule 1) for 127.0.0.0/8 not from lo
	chPorts    = "MYNET-PORTS"       // filter, jumped from the shard of a routed network or one with trusted interfaces: open ports
	chAccept   = "MYNET-ACCEPT"      // filter, the target of every accept of ours: marks the connection, then accepts
	chKnown    = "MYNET-KNOWN"       // filter, rule 1 of MYNET-FORWARD for marked connections: accepts them at once

	chainPrefix   = "MYNET-"
	commentBase   = "mynet"  // comment of rules that belong to no network
	commentPrefix = "mynet:" // + 12-char network id
	ownerSep      = "@"      // + the instance that made the network's rules

	dockerUser = "DOCKER-USER" // Docker's chain for the user's own rules

	loopbackNet = "127.0.0.0/8"
)

// ourTables are the tables that hold chains or rules of ours.
var ourTables = []string{tFilter, tNat, tRaw}

// DefaultForeignBridges are the interface patterns (iptables syntax, "+" is a
// trailing wildcard) of the bridges of Docker's own bridge driver: docker0,
// docker_gwbridge and br-<12 hex>. Our bridges are isolated from them.
var DefaultForeignBridges = []string{"docker+", "br-+"}

// netComment is the comment of a network's published ports: "mynet:<id12>".
func netComment(id12 string) string { return commentPrefix + id12 }

// ownedComment is the comment of a network's other rules. With an owner (the
// mynet instance, one per state file) it is "mynet:<id12>@<owner>": another
// mynet in the same network namespace then knows these rules are not its
// own even on a bridge that carries no mark of either.
func ownedComment(id12, owner string) string {
	if owner == "" {
		return netComment(id12)
	}
	return netComment(id12) + ownerSep + owner
}

// commentNetwork returns the network id and owner a rule comment names; ok
// is false for comments that name no network.
func commentNetwork(comment string) (id12, owner string, ok bool) {
	rest, ok := strings.CutPrefix(comment, commentPrefix)
	if !ok || rest == "" {
		return "", "", false
	}
	id12, owner, _ = strings.Cut(rest, ownerSep)
	return id12, owner, true
}

// chainRef names a chain of a table.
type chainRef struct{ table, name string }

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

// head is the rules that must open a chain, in this order. In FORWARD they
// come right after Docker's DOCKER-USER jump when that is first: the user's
// rules there apply to mynet networks as they do to Docker's, and Docker,
// which puts that jump back at rule 1 after every network it creates, then
// leaves ours in place.
type head struct {
	table, chain    string
	rules           []rule
	afterDockerUser bool
}

// The chains that hold rules of every network are split in 16 shards by
// the first character of the network id (MYNET-FORWARD-0 ... -f): deleting
// a rule makes iptables-nft fetch the whole chain it is in (about 10 us per
// rule), so a network's removal would otherwise cost more with every other
// network. The shards also keep a packet's walk short: a parent chain jumps
// to shard s only for packets whose interface is named like a bridge of
// that shard (mn-<s>+, see guardDirs), so a packet crosses the rules of a
// sixteenth of the networks, not of all of them. A network whose bridge is
// named otherwise (com.docker.network.bridge.name) has jumps of its own in
// the parent chains (guardRules). MYNET-POSTROUTING's jumps stay
// unconditional: POSTROUTING knows no input interface, and nat only sees a
// connection's first packet.
var shardedChains = []chainRef{{tFilter, chForward}, {tFilter, chIso1}, {tFilter, chIso2}, {tNat, chPost}, {tRaw, chLoopback}}

// BridgePrefix starts the name of every bridge mynet names itself: the
// shards' jumps match on it.
const BridgePrefix = "mn-"

// BridgeName is the name mynet gives the bridge of network id: mn-<id12>.
func BridgeName(id string) string { return BridgePrefix + protocol.Short(id) }

// guardDirs are the interface options a jump from parent into a shard
// matches on: the rules of a network in MYNET-FORWARD match its bridge as
// input or output, in MYNET-ISO-1 and MYNET-LOOPBACK as input, in
// MYNET-ISO-2 as output.
func guardDirs(parent string) []string {
	switch parent {
	case chForward:
		return []string{"-i", "-o"}
	case chIso1, chLoopback:
		return []string{"-i"}
	case chIso2:
		return []string{"-o"}
	}
	return nil
}

// shardNamed reports whether network id12's bridge is reached through its
// shard's name guard (mn-<shard>...).
func shardNamed(bridge, id12 string) bool {
	return strings.HasPrefix(bridge, BridgePrefix+string(shard(id12)))
}

// inFamily reports whether chain c exists in family fam: the loopback
// guard is IPv4 only (IPv6 has no route_localnet; the kernel drops ::1 from
// any other interface).
func inFamily(c chainRef, fam family) bool { return fam == v4 || c.table != tRaw }

const shardDigits = "0123456789abcdef"

// shard is the shard of network id12: its first character if it is a
// lower-case hex digit (Docker's ids), else one picked from its byte value.
func shard(id12 string) byte {
	c := id12[0]
	if strings.IndexByte(shardDigits, c) >= 0 {
		return c
	}
	return shardDigits[c%16]
}

func shardChain(parent string, sh byte) string { return parent + "-" + string(sh) }

// shardsOf are the shard chains that hold the rules of network id12.
func shardsOf(id12 string) []chainRef {
	sh := shard(id12)
	out := make([]chainRef, len(shardedChains))
	for i, c := range shardedChains {
		out[i] = chainRef{c.table, shardChain(c.name, sh)}
	}
	return out
}

func baseChains(fam family) []chainRef {
	var cs []chainRef
	for _, c := range shardedChains {
		if !inFamily(c, fam) {
			continue
		}
		cs = append(cs, c)
		for i := range len(shardDigits) {
			cs = append(cs, chainRef{c.table, shardChain(c.name, shardDigits[i])})
		}
	}
	return append(cs, chainRef{tNat, chDNAT}, chainRef{tFilter, chPorts}, chainRef{tFilter, chAccept}, chainRef{tFilter, chKnown})
}

// shardJumps are the jumps from a sharded chain into its 16 shards, each
// guarded by the bridge names of its shard (see guardDirs).
func shardJumps(tbl, parent string) []rule {
	var rs []rule
	for i := range len(shardDigits) {
		sh := shardDigits[i]
		dirs := guardDirs(parent)
		if len(dirs) == 0 {
			rs = append(rs, mk(tbl, parent, commentBase, nil, shardChain(parent, sh)))
		}
		for _, dir := range dirs {
			rs = append(rs, mk(tbl, parent, commentBase, []string{dir, BridgePrefix + string(sh) + "+"}, shardChain(parent, sh)))
		}
	}
	return rs
}

// guardRules adds to nr, for a network whose bridge the shard guards miss,
// its own jumps from each parent chain into the shards that hold its rules.
func guardRules(nr netRules, br, id12, comment string) {
	if shardNamed(br, id12) {
		return
	}
	sh := shard(id12)
	for _, c := range shardedChains {
		if len(nr[chainRef{c.table, shardChain(c.name, sh)}]) == 0 {
			continue
		}
		for _, dir := range guardDirs(c.name) {
			nr[c] = append(nr[c], mk(c.table, c.name, comment, []string{dir, br}, shardChain(c.name, sh)))
		}
	}
}

// baseHeads: the jumps from the built-in chains into ours, the isolation
// check first in MYNET-FORWARD, and the foreign bridges' part of it.
// outputMatch is the match of the OUTPUT jump to MYNET-DNAT: in IPv6 not
// for ::1, which no DNAT can serve (the kernel never routes a packet from ::1
// off lo); the socket that holds the host port answers it (a proxy).
func outputMatch(fam family, local []string) []string {
	if fam == v6 {
		return append([]string{"!", "-d", "::1/128"}, local...)
	}
	return local
}

// entryHeads are the jumps from the built-in chains into ours. With no
// network of any mynet instance in place there are none (entered false):
// the host's packets then cross no rule of ours.
func entryHeads(fam family, entered bool) []head {
	local := []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	hs := []head{
		{table: tFilter, chain: "FORWARD", rules: []rule{mk(tFilter, "FORWARD", commentBase, nil, chForward)}, afterDockerUser: true},
		{table: tNat, chain: "PREROUTING", rules: []rule{mk(tNat, "PREROUTING", commentBase, local, chDNAT)}},
		{table: tNat, chain: "OUTPUT", rules: []rule{mk(tNat, "OUTPUT", commentBase, outputMatch(fam, local), chDNAT)}},
		{table: tNat, chain: "POSTROUTING", rules: []rule{mk(tNat, "POSTROUTING", commentBase, nil, chPost)}},
	}
	if fam == v4 {
		// Only packets to 127.0.0.0/8 that did not come from lo enter the
		// guard: the rest of the host's traffic pays one rule.
		toLoopback := []string{"-d", loopbackNet, "!", "-i", "lo"}
		hs = append(hs, head{table: tRaw, chain: "PREROUTING", rules: []rule{mk(tRaw, "PREROUTING", commentBase, toLoopback, chLoopback)}})
	}
	if !entered {
		for i := range hs {
			hs[i].rules = nil // headOps then removes ours
		}
	}
	return hs
}

func baseHeads(fam family, foreign []string, entered, bridged bool) []head {
	forward := []rule{
		mk(tFilter, chForward, commentBase, []string{"-m", "connmark", "--mark", acceptedMark}, chKnown),
		mk(tFilter, chForward, commentBase, nil, chIso1),
	}
	hs := append(entryHeads(fam, entered),
		head{table: tFilter, chain: chForward, rules: append(forward, shardJumps(tFilter, chForward)...)},
		head{table: tFilter, chain: chAccept, rules: []rule{
			mk(tFilter, chAccept, commentBase, nil, "CONNMARK", "--set-xmark", acceptedMark),
			mk(tFilter, chAccept, commentBase, nil, "ACCEPT"),
		}},
		head{table: tFilter, chain: chKnown, rules: knownRules(foreign, bridged)},
		head{table: tNat, chain: chPost, rules: shardJumps(tNat, chPost)})
	if fam == v4 {
		hs = append(hs, head{table: tRaw, chain: chLoopback, rules: shardJumps(tRaw, chLoopback)})
	}
	// A packet between two foreign bridges is Docker's business: return
	// first. A packet from a foreign bridge is checked against our bridges
	// in MYNET-ISO-2 (which also drops those going to a foreign bridge,
	// needed for packets that come from ours).
	iso := head{table: tFilter, chain: chIso1}
	for _, p := range foreign {
		for _, q := range foreign {
			iso.rules = append(iso.rules, mk(tFilter, chIso1, commentBase, []string{"-i", p, "-o", q}, "RETURN"))
		}
	}
	for _, p := range foreign {
		iso.rules = append(iso.rules, mk(tFilter, chIso1, commentBase, []string{"-i", p}, chIso2))
	}
	iso.rules = append(iso.rules, shardJumps(tFilter, chIso1)...)
	// MYNET-ISO-2: drops of packets going to a foreign bridge, then the
	// shards with the drops of packets going to one of ours.
	drops := head{table: tFilter, chain: chIso2}
	for _, p := range foreign {
		drops.rules = append(drops.rules, mk(tFilter, chIso2, commentBase, []string{"-o", p}, "DROP"))
	}
	drops.rules = append(drops.rules, shardJumps(tFilter, chIso2)...)
	return append(hs, iso, drops)
}

// netRules is the wanted state of one network in one family: its rules in
// each shared chain, in order.
type netRules map[chainRef][]rule

// buildNetRules returns the rules of network n for family fam, each with
// the given comment; subnets are n's subnets of that family (at least one).
// A bridge network with one subnet has 9 rules in IPv4 and 7 in IPv6: 5 in
// filter (3 in MYNET-FORWARD, 1 in each isolation chain), 3 in nat (2 in
// IPv6) and, in IPv4, the loopback guard in raw. An internal network has 5
// (4 with ICC off), all in filter. A network whose bridge is not named
// mn-<id12> has 5 jumps more in IPv4 (4 in IPv6 or if internal): its own
// way into its shards.
func buildNetRules(n *Network, fam family, subnets []netip.Prefix, comment string) netRules {
	nr := shardRules(n, fam, subnets, comment)
	guardRules(nr, n.Bridge, protocol.Short(n.ID), comment)
	return nr
}

// shardRules are the rules of network n in its shard chains (and MYNET-PORTS
// and MYNET-DNAT), as buildNetRules describes.
func shardRules(n *Network, fam family, subnets []netip.Prefix, comment string) netRules {
	br := n.Bridge
	nr := netRules{}
	sh := shard(protocol.Short(n.ID))
	add := func(tbl, ch string, match []string, target ...string) {
		k := chainRef{tbl, shardChain(ch, sh)}
		nr[k] = append(nr[k], mk(tbl, k.name, comment, match, target...))
	}
	// Isolation (MYNET-ISO-1 runs before any accept): leaving this bridge
	// for another bridge of ours or Docker's, or entering it from one.
	add(tFilter, chIso1, []string{"-i", br, "!", "-o", br}, chIso2)
	add(tFilter, chIso2, []string{"-o", br}, "DROP")
	// Forwarding is decided by interface, not by address: what comes in on
	// the bridge is the network's own traffic, and nothing else may open a
	// connection into it, whatever the FORWARD policy and whatever source
	// address a packet claims.
	if n.Internal {
		if n.ICC {
			add(tFilter, chForward, []string{"-i", br, "-o", br}, chAccept)
		}
		add(tFilter, chForward, []string{"-i", br}, "DROP")
		add(tFilter, chForward, []string{"-o", br}, "DROP")
		return nr
	}
	// Replies, and connections our DNAT rules sent to this bridge (published
	// ports, from outside, from the host or hairpin from the bridge itself,
	// even with ICC off), come first; every other new connection into the
	// bridge is dropped, from the bridge itself too unless ICC allows it.
	add(tFilter, chForward, []string{"-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT"}, chAccept)
	// What Docker 28's gateway modes and trusted interfaces let in from
	// outside the bridge, before the drop.
	mode := n.gatewayMode(fam)
	fromOutside := []string{"!", "-i", br, "-o", br}
	switch {
	case mode == GatewayNATUnprotected:
		add(tFilter, chForward, fromOutside, chAccept) // every port of every container
	case mode == GatewayRouted:
		add(tFilter, chForward, append(fromOutside, "-p", icmpProto(fam)), chAccept)
		add(tFilter, chForward, fromOutside, chPorts) // published container ports
	case len(n.TrustedIfs) > 0:
		add(tFilter, chForward, fromOutside, chPorts)
	}
	if n.ICC {
		add(tFilter, chForward, []string{"-i", br}, chAccept)
		add(tFilter, chForward, []string{"-o", br}, "DROP")
	} else {
		add(tFilter, chForward, []string{"-o", br}, "DROP")
		add(tFilter, chForward, []string{"-i", br}, chAccept)
	}
	for _, p := range subnets {
		if n.Masquerade && mode != GatewayRouted {
			add(tNat, chPost, []string{"-s", p.String(), "!", "-o", br}, "MASQUERADE")
		}
	}
	for _, p := range subnets {
		// Hairpin: a container reaching a published port of its own network
		// through a host address; the target must answer through the host.
		add(tNat, chPost, []string{"-s", p.String(), "-o", br, "-m", "conntrack", "--ctstate", "DNAT"}, "MASQUERADE")
	}
	if fam == v4 {
		// 127.0.0.1:HOSTPORT from the host (needs route_localnet on br),
		// and the guard route_localnet calls for: a packet a container
		// addresses to 127.0.0.0/8 itself never reaches the host's loopback
		// services (translated packets are not addressed to 127/8 when raw
		// sees them: answers of the host's 127.0.0.1 connections arrive
		// addressed to the gateway and are translated back later).
		add(tNat, chPost, []string{"-s", loopbackNet, "-o", br}, "MASQUERADE")
		add(tRaw, chLoopback, []string{"-i", br, "-d", loopbackNet}, "DROP")
	}
	return nr
}

// icmpProto is ICMP's protocol name in iptables-save's output.
func icmpProto(fam family) string {
	if fam == v6 {
		return "ipv6-icmp"
	}
	return "icmp"
}

// openRules are the MYNET-PORTS rules that let a published port be reached
// at the container's own address and port: from anywhere (but another
// bridge: isolation ran first) in gateway mode routed, where there is no
// DNAT, else from each trusted host interface. The network's shard jumps to
// MYNET-PORTS only for packets from outside its bridge.
func openRules(n *Network, fam family, p state.PortBinding) []rule {
	id12 := protocol.Short(n.ID)
	dst := netip.PrefixFrom(p.ContainerIP, p.ContainerIP.BitLen()).String()
	port := []string{"-p", p.Proto, "-m", p.Proto, "--dport", strconv.Itoa(int(p.ContainerPort))}
	if n.gatewayMode(fam) == GatewayRouted {
		m := append([]string{"-d", dst, "-o", n.Bridge}, port...)
		return []rule{mk(tFilter, chPorts, netComment(id12), m, chAccept)}
	}
	var rs []rule
	for _, ifName := range n.TrustedIfs {
		m := append([]string{"-d", dst, "-i", ifName, "-o", n.Bridge}, port...)
		rs = append(rs, mk(tFilter, chPorts, netComment(id12), m, chAccept))
	}
	return rs
}

// portRule is the DNAT rule of one published port.
func portRule(id12 string, p state.PortBinding) rule {
	var match []string
	if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
		match = append(match, "-d", netip.PrefixFrom(p.HostIP, p.HostIP.BitLen()).String())
	}
	match = append(match, "-p", p.Proto, "-m", p.Proto, "--dport", strconv.Itoa(int(p.HostPort)))
	to := netip.AddrPortFrom(p.ContainerIP, p.ContainerPort).String()
	return mk(tNat, chDNAT, netComment(id12), match, "DNAT", "--to-destination", to)
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
