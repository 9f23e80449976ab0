package firewall

import "fmt"

// Known connections. Every accept of ours goes through MYNET-ACCEPT, which
// sets AcceptedMark in the connection's mark before it accepts. The first
// rule of MYNET-FORWARD sends the packets of a marked connection to
// MYNET-KNOWN, which accepts most of them at once: after its first packet a
// connection no longer walks isolation and a shard, whatever the number of
// networks.
//
// A verdict holds over a connection's life (a network's options are fixed,
// an endpoint's flows are forgotten when it goes) unless a new route sends
// its packets elsewhere: a flow that went out through the uplink goes into
// a bridge once a network made later has its address. Isolation is about
// packets between two bridges, and those are exactly what MYNET-KNOWN sends
// back to the whole walk: routed between two bridges of ours (mn-+), or from or to
// a foreign (Docker) bridge. Frames bridged within one bridge never cross
// bridges, so they are accepted at once (the physdev match; only once
// br_netfilter is loaded, since before that no bridged frame reaches
// iptables, and the match would load it). A bridge of ours named otherwise
// (com.docker.network.bridge.name) is not told apart by name: the driver
// forgets the marked flows of its subnets when it comes.

// AcceptedMark is the connection mark bit (ctmark) MYNET-ACCEPT sets on
// every connection our rules accept.
const AcceptedMark uint32 = 0x1000000

// acceptedMark is AcceptedMark in iptables-save's words (it prints
// --set-mark with a mask equal to the value as --set-xmark).
var acceptedMark = fmt.Sprintf("%#x/%#x", AcceptedMark, AcceptedMark)

// knownRules are MYNET-KNOWN's, as the comment above says; bridged: whether
// bridged frames cross iptables (br_netfilter is loaded).
func knownRules(foreign []string, bridged bool) []rule {
	ours := BridgePrefix + "+"
	var rs []rule
	if bridged {
		rs = append(rs, mk(tFilter, chKnown, commentBase, []string{"-m", "physdev", "--physdev-is-bridged"}, "ACCEPT"))
	}
	rs = append(rs, mk(tFilter, chKnown, commentBase, []string{"-i", ours, "-o", ours}, "RETURN"))
	for _, p := range foreign {
		rs = append(rs,
			mk(tFilter, chKnown, commentBase, []string{"-i", p}, "RETURN"),
			mk(tFilter, chKnown, commentBase, []string{"-o", p}, "RETURN"))
	}
	return append(rs, mk(tFilter, chKnown, commentBase, nil, "ACCEPT"))
}

// bridgedThroughIptables reports whether bridged frames of family fam can
// reach iptables: br_netfilter is loaded (its sysctls exist).
func (f *Firewall) bridgedThroughIptables(fam family) bool {
	name := "net/bridge/bridge-nf-call-iptables"
	if fam == v6 {
		name = "net/bridge/bridge-nf-call-ip6tables"
	}
	err := f.sysctls.Stat(name)
	return err == nil
}
