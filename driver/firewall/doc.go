// Package firewall programs, for each mynet bridge network, what Docker's
// bridge driver programs for its own networks (outbound NAT, forwarding
// accepts, inter-container on/off, isolation, --internal, published ports),
// in chains of our own that the built-in chains jump to.
//
// # Chain layout (same in iptables and ip6tables)
//
//	table   chain                 jumped from                           content
//	filter  MYNET-FORWARD         FORWARD rule 1 (2 after DOCKER-USER)  -j MYNET-ISO-1, then -j MYNET-FORWARD-<s> for s in 0..f,
//	                                                                    then the open-port rules (see Gateway modes)
//	filter  MYNET-FORWARD-<s>     MYNET-FORWARD                         3 rules per network of shard s
//	filter  MYNET-ISO-1           MYNET-FORWARD rule 1                  Docker bridge to Docker bridge: RETURN; from a Docker
//	                                                                    bridge: -j MYNET-ISO-2; then -j MYNET-ISO-1-<s>
//	filter  MYNET-ISO-1-<s>       MYNET-ISO-1                           per network: -i BR ! -o BR -j MYNET-ISO-2
//	filter  MYNET-ISO-2           MYNET-ISO-1, MYNET-ISO-1-<s>          -o docker+ / br-+ -j DROP, then -j MYNET-ISO-2-<s>
//	filter  MYNET-ISO-2-<s>       MYNET-ISO-2                           per network: -o BR -j DROP
//	filter  MYNET-I-<id>          MYNET-FORWARD-<s>                     only an internal network with several subnets in one family
//	nat     MYNET-DNAT            PREROUTING, OUTPUT rule 1             1 DNAT rule per published port
//	                              (-m addrtype --dst-type LOCAL)
//	nat     MYNET-POSTROUTING     POSTROUTING rule 1                    -j MYNET-POSTROUTING-<s> for s in 0..f
//	nat     MYNET-POSTROUTING-<s> MYNET-POSTROUTING                     MASQUERADE per network: outbound, hairpin, 127.0.0.0/8
//
// <id> is the first 12 characters of the network id and <s> its first
// character (the shard, see shard); every rule of a network carries the
// comment "mynet:<id>", the rules that belong to no network carry "mynet".
// The shards keep the chains a network's rules are deleted from short:
// iptables-nft fetches the whole chain to delete a rule from it. A network
// with one IPv4 subnet has 8 rules, Docker's count for one of its bridge
// networks: in filter "-o BR ctstate RELATED,ESTABLISHED,DNAT ACCEPT", "-i BR
// -o BR ACCEPT|DROP" (ICC), "-i BR ! -o BR ACCEPT", and one rule in each
// isolation chain; in nat the outbound MASQUERADE, the hairpin MASQUERADE and
// the 127.0.0.0/8 MASQUERADE (IPv6: no 127/8 rule). An internal network has
// 5 (ICC and two drops for traffic leaving the subnet instead of the accepts,
// no nat rules). A published port is 1 rule (Docker: 3).
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
// Docker inserts its rules at the top of FORWARD when it creates a bridge
// network; EnsureBase (called periodically) and AddNetwork put ours back.
// Limits: a Docker bridge given a custom name (com.docker.network.bridge.name)
// is not recognised, and a host uplink named br-* or docker* would be cut
// off (set Config.ForeignBridges).
//
// # Published ports
//
// A port is one DNAT rule, in both PREROUTING and OUTPUT (any local
// destination, 127.0.0.0/8 included), also for packets coming from the
// network's own bridge (hairpin; there is no userland proxy). The filter side
// needs no per-port rule: each network accepts, before its ICC rule,
// connections whose destination was translated (conntrack state DNAT). So a
// published port is reachable from outside, from the host (also 127.0.0.1)
// and from containers of the same network (even with ICC off); not from other
// mynet or Docker networks (isolation comes first); and a direct, untranslated
// connection to the container's address is not accepted by our rules (it falls
// through to the rest of FORWARD and its policy). Hairpin and 127.0.0.1
// connections are masqueraded so the answer comes back through the host.
//
// # Gateway modes and trusted interfaces
//
// Network.GatewayModeV4/V6 are Docker 28's gateway modes, per family. nat
// (the default) is what the sections above describe. nat-unprotected adds
// "! -i BR -o BR -j ACCEPT" to the network's shard: anything but another
// bridge reaches every port of the containers' addresses. routed has no
// outbound MASQUERADE, accepts ICMP to the bridge, and a published port has
// no DNAT rule and no host port: it is an open-port rule "-d CTR ! -i BR -o
// BR -p P --dport CPORT -j ACCEPT" in MYNET-FORWARD. With trusted interfaces
// (nat), each published port also gets "-d CTR -i IF -o BR -p P --dport
// CPORT -j ACCEPT" per interface, so it is reachable at the container's own
// address from there. Open-port rules come after the shard jumps, so the
// isolation checks run first. isolated is only for internal networks, whose
// rules do not change; the caller keeps the gateway off the bridge.
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
