// Package firewall programs, for each mynet bridge network, what Docker's
// bridge driver programs for its own networks (outbound NAT, forwarding
// accepts, inter-container on/off, isolation, --internal, published ports),
// in chains of our own that the built-in chains jump to.
//
// # Chain layout (same in iptables and ip6tables, but raw: IPv4 only)
//
//	table   chain                 jumped from                           content
//	filter  MYNET-FORWARD         FORWARD rule 1 (2 after DOCKER-USER)  marked: -j MYNET-KNOWN; -j MYNET-ISO-1, then -i mn-<s>+
//	                                                                    and -o mn-<s>+ -j MYNET-FORWARD-<s> for s in 0..f
//	filter  MYNET-KNOWN           MYNET-FORWARD rule 1                  bridged frames: ACCEPT; -i mn-+ -o mn-+ and -i/-o
//	                                                                    docker+, br-+: RETURN; then ACCEPT
//	filter  MYNET-ACCEPT          every accept of ours                  mark the connection, then ACCEPT
//	filter  MYNET-FORWARD-<s>     MYNET-FORWARD                         3 rules per network of shard s
//	filter  MYNET-ISO-1           MYNET-FORWARD rule 2                  Docker bridge to Docker bridge: RETURN; from a Docker
//	                                                                    bridge: -j MYNET-ISO-2; then -i mn-<s>+ -j MYNET-ISO-1-<s>
//	filter  MYNET-ISO-1-<s>       MYNET-ISO-1                           per network: -i BR ! -o BR -j MYNET-ISO-2
//	filter  MYNET-ISO-2           MYNET-ISO-1, MYNET-ISO-1-<s>          -o docker+ / br-+ -j DROP, then -o mn-<s>+ -j MYNET-ISO-2-<s>
//	filter  MYNET-ISO-2-<s>       MYNET-ISO-2                           per network: -o BR -j DROP
//	nat     MYNET-DNAT            PREROUTING, OUTPUT rule 1             1 DNAT rule per published port and family
//	                              (-m addrtype --dst-type LOCAL;
//	                              IPv6 OUTPUT also ! -d ::1/128)
//	nat     MYNET-POSTROUTING     POSTROUTING rule 1                    -j MYNET-POSTROUTING-<s> for s in 0..f
//	nat     MYNET-POSTROUTING-<s> MYNET-POSTROUTING                     MASQUERADE per network: outbound, hairpin, 127.0.0.0/8
//	raw     MYNET-LOOPBACK        PREROUTING rule 1                     -i mn-<s>+ -j MYNET-LOOPBACK-<s> for s in 0..f
//	                              (-d 127.0.0.0/8 ! -i lo)
//	raw     MYNET-LOOPBACK-<s>    MYNET-LOOPBACK                        per network: -i BR -d 127.0.0.0/8 -j DROP
//	filter  MYNET-PORTS           MYNET-FORWARD-<s> (some networks)     open ports (see Gateway modes and trusted interfaces)
//
// <id> is the first 12 characters of the network id and <s> its first
// character (the shard, see shard). A parent jumps to a shard only for the
// interfaces named like its bridges (mn-<s>...), so a forwarded packet
// crosses the rules of one shard's networks, not of every network; a
// network whose bridge has another name adds its own jumps (-i BR / -o BR)
// to the parents. The jumps from the built-in chains (the "jumped from"
// column's FORWARD, PREROUTING, OUTPUT and POSTROUTING) exist only while
// some network, of any mynet instance, has rules: with none, the host's
// packets cross no rule of ours. A network's rules carry the comment
// "mynet:<id>@<owner>", where <owner> names the mynet instance that made
// them (Config.Owner; without one, "mynet:<id>"); its published ports carry
// "mynet:<id>"; the rules that belong to no network carry "mynet". The
// shards keep the chains a network's rules are deleted from short:
// iptables-nft fetches the whole chain to delete a rule from it.
//
// A network with one IPv4 subnet has 9 rules, Docker's 8 for one of its
// bridge networks and the loopback guard: in filter "-o BR ctstate
// RELATED,ESTABLISHED,DNAT ACCEPT", "-i BR ACCEPT" and "-o BR DROP" (in the
// other order with ICC off, so that the drop also stops traffic within the
// bridge; each ACCEPT of ours is a jump to MYNET-ACCEPT), and one rule in
// each isolation chain; in nat the outbound
// MASQUERADE, the hairpin MASQUERADE and the 127.0.0.0/8 MASQUERADE; in raw
// the guard. In IPv6 it has 7 (no 127/8 rules). An internal network has 5,
// all in filter: the isolation pair, "-i BR -o BR ACCEPT" (none with ICC
// off), "-i BR DROP" and "-o BR DROP". A published port is 1 rule (Docker: 3).
//
// The caller enables forwarding (net.ipv4.ip_forward, IPv6 forwarding) and,
// for a container to reach its own published port through a host address,
// hairpin mode on its bridge port (with bridge-nf-call-iptables=1, the
// kernel's default once br_netfilter is loaded, the translated packet is
// bridged back out of the port it came in on). Other containers of the same
// network need no hairpin mode.
//
// # Isolation
//
// Isolation is by interface, not by subnet: the subnets of Docker's networks
// are unknown to us (we never call the Docker API) and interface names are
// what the kernel knows at forwarding time. Every packet between two
// different bridges of ours, or between a bridge of ours and an interface
// matching Docker's bridge names (docker0, docker_gwbridge, br-<id>; see
// DefaultForeignBridges), is dropped, in both directions, by MYNET-ISO-1/2,
// which run before any accept of ours; MYNET-FORWARD comes before Docker's
// rules in FORWARD (only DOCKER-USER, the user's own chain, comes first), so
// the drops also come before Docker's "-i docker0 ! -o docker0 -j ACCEPT".
// Docker 20.10 inserts its rules at the top of FORWARD when it creates a
// bridge network; EnsureBase, which the driver calls as soon as anyone else
// commits a change (WatchRuleset) and periodically, and AddNetwork put ours
// back.
// Limits: a Docker bridge given a custom name (com.docker.network.bridge.name)
// is not recognised, and a host uplink named br-* or docker* would be cut
// off (set Config.ForeignBridges).
//
// # Known connections
//
// Every accept of ours goes through MYNET-ACCEPT, which sets a bit of the
// connection's mark (AcceptedMark, 0x1000000) before it accepts. The first
// rule of MYNET-FORWARD sends the packets of a marked connection to
// MYNET-KNOWN, which accepts at once the frames bridged within one bridge
// and the packets that do not go between two bridges (ours, mn-+, or
// Docker's): after its first packet a connection crosses 3 (within a
// network) to 9 rules of ours, FORWARD's jump included, whatever the number
// of networks (Docker's bridge walks every network's rules for every
// packet). Packets between two bridges, where isolation matters, take the
// whole walk, so a connection our rules accepted when its address was
// behind the uplink does not go on unchecked into a network made later
// with that address. Details in known.go. The user's DOCKER-USER rules run
// before MYNET-FORWARD, for every packet.
//
// # Traffic into a network
//
// Forwarding is decided by interface, never by address, and never left to
// the FORWARD policy: a connection into a bridge of ours is accepted only
// when it comes from that bridge and ICC allows it, or when our DNAT rules
// sent it there (a published port); replies of the network's own
// connections come back. Every other packet going into the bridge is
// dropped, whatever its source address claims, for IPv4 and IPv6, so a
// neighbour that routes a container subnet through the host reaches no
// container directly even with the policy at ACCEPT (Docker 28 drops the same
// traffic for its own bridges, with a rule per network and raw-table drops
// per published port; checking the conntrack state DNAT makes those
// unnecessary here). An internal network lets nothing in or out. The user's
// DOCKER-USER rules run before ours and may accept more.
//
// # Published ports
//
// A port is one DNAT rule, in both PREROUTING and OUTPUT (any local
// destination, 127.0.0.0/8 included), also for packets coming from the
// network's own bridge (hairpin; there is no userland proxy). The filter side
// needs no per-port rule: each network accepts, before its drops,
// connections whose destination was translated (conntrack state DNAT). So a
// published port is reachable from outside, from the host (also 127.0.0.1)
// and from containers of the same network (even with ICC off); not from other
// mynet or Docker networks (isolation comes first); and a direct, untranslated
// connection to the container's address is dropped. Hairpin and 127.0.0.1
// connections are masqueraded so the answer comes back through the host.
//
// The ports come as state.PortBinding records; each gives the DNAT rules of
// PortBinding.Translated: a binding on every address of a dual-stack
// container is an IPv4 rule and an IPv6 rule (to ContainerIPv6). An IPv6
// host address of an IPv4-only container, and ::1, get no rule: the kernel
// never routes a packet from ::1 off lo, so the IPv6 OUTPUT jump skips ::1,
// and the socket that holds the host port (driver/ports) proxies those.
//
// # Gateway modes and trusted interfaces
//
// Network.GatewayModeV4/V6 are Docker 28's gateway modes, per family. nat
// (the default) is what the sections above describe. The others add, to the
// network's shard before its drop of new connections into the bridge, for
// packets from outside the bridge ("! -i BR -o BR"): nat-unprotected an
// ACCEPT (every port of the containers' addresses); routed an ICMP ACCEPT
// and a jump to MYNET-PORTS, and no outbound MASQUERADE. A published port of
// a routed network has no DNAT rule and no host port: it is a rule "-d CTR
// -o BR -p P --dport CPORT -j ACCEPT" in MYNET-PORTS. With trusted
// interfaces (nat), the shard jumps to MYNET-PORTS too and each published
// port also gets "-d CTR -i IF -o BR -p P --dport CPORT -j ACCEPT" per
// interface there, so it is reachable at the container's own address from
// there. Isolation runs first in every case. isolated is only for internal
// networks, whose rules do not change; the caller keeps the gateway off the
// bridge.
//
// # The host's loopback
//
// Forwarding 127.0.0.1:HOSTPORT to a container needs route_localnet on the
// bridge (BridgeSysctls), which also lets packets addressed to 127.0.0.0/8
// in from the bridge: a container with CAP_NET_RAW could reach what the host
// binds to its loopback only. The raw-table guard drops them before any
// routing, as Kubernetes and Docker do. Translated traffic never matches it:
// the answers of the host's own 127.0.0.1 connections arrive addressed to
// the bridge's gateway and are translated back after raw.
//
// # Several instances
//
// Two mynet instances (two state files) may share a network namespace and
// so these chains. Each touches only the rules of the networks it is asked
// about, the owner in the comments tells which instance made a network's
// rules (OwnedNetworks), and chains are created with -N, which fails rather
// than emptying a chain the other instance made (see cache.go).
//
// # Programming
//
// Each operation computes the difference between the wanted rules and the
// current ones and applies it with one iptables-restore --noflush per family
// (each table commits atomically); an operation that finds nothing to do runs
// no process. The current rules come from a copy of iptables-save's output
// kept in memory and checked against the nf_tables generation (see cache.go):
// reading the whole ruleset costs tens of milliseconds once networks number
// in the hundreds, a restore about 10 ms whatever their number. With the
// legacy backend (no generation) every operation reads the ruleset.
// Operations are serialised by a mutex and run on the calling OS thread, so a
// caller locked to a thread in another network namespace programs that
// namespace.
package firewall
