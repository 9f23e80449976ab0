package firewall

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Known connections. Every accept of ours goes through MYNET-ACCEPT, which
// writes the current generation into the connection's mark (the bits of
// genMask) before it accepts. MYNET-FORWARD's first rule jumps to
// MYNET-KNOWN, which accepts at once the packets of a connection marked
// with the current generation: after its first packet a connection no
// longer walks isolation and a shard, whatever the number of networks.
//
// The verdict of such a connection holds while no new route appears: a
// network's options are fixed, and an endpoint's flows are forgotten when
// it goes. A route appears when a bridge of ours comes (a network added, or
// its bridge made again): every AddNetwork and AddNetworks starts a new
// generation in the same restore, so a connection that went out through
// the uplink before takes the whole walk again at its next packet (and is
// marked again if our rules still accept it). Docker's bridges come and go
// without telling us, so MYNET-KNOWN sends every packet from or to one of
// them through the whole walk, isolation first.
//
// Generations run from 1 to 255; before one is used again, the flows still
// marked with it (255 new networks ago) are forgotten, and when our chains
// are made afresh, every flow marked with any generation is.

const (
	genMask  uint32 = 0xff000000 // the connection mark bits mynet uses
	genShift        = 24
	maxGen   uint32 = genMask >> genShift
)

// genMark is generation gen as iptables-save prints a mark and its mask.
func genMark(gen uint32) string { return fmt.Sprintf("%#x/%#x", gen<<genShift, genMask) }

// acceptRules are MYNET-ACCEPT's: mark the connection, then accept.
func acceptRules(gen uint32) []rule {
	return []rule{
		mk(tFilter, chAccept, commentBase, nil, "CONNMARK", "--set-xmark", genMark(gen)),
		mk(tFilter, chAccept, commentBase, nil, "ACCEPT"),
	}
}

// knownRules are MYNET-KNOWN's: connections not marked with generation gen
// go back to the walk; so do packets from or to a foreign bridge; the rest
// is accepted, between bridges of ours first (frames within a network,
// bridged through FORWARD, then cross three rules of ours in all).
func knownRules(foreign []string, gen uint32) []rule {
	ours := BridgePrefix + "+"
	rs := []rule{
		mk(tFilter, chKnown, commentBase, []string{"-m", "connmark", "!", "--mark", genMark(gen)}, "RETURN"),
		mk(tFilter, chKnown, commentBase, []string{"-i", ours, "-o", ours}, "ACCEPT"),
	}
	for _, p := range foreign {
		rs = append(rs,
			mk(tFilter, chKnown, commentBase, []string{"-i", p}, "RETURN"),
			mk(tFilter, chKnown, commentBase, []string{"-o", p}, "RETURN"))
	}
	return append(rs, mk(tFilter, chKnown, commentBase, nil, "ACCEPT"))
}

var setMarkRE = regexp.MustCompile(`--set-xmark (0x[0-9a-f]+)/` + fmt.Sprintf("%#x", genMask))

// currentGen reads the generation MYNET-ACCEPT writes in st (0: none).
func currentGen(st *ruleset) uint32 {
	ch := st.chain(tFilter, chAccept)
	if ch == nil {
		return 0
	}
	for _, r := range ch.rules {
		if m := setMarkRE.FindStringSubmatch(r.text); m != nil {
			v, err := strconv.ParseUint(m[1], 0, 32)
			if g := uint32(v) >> genShift; err == nil && g >= 1 && g <= maxGen {
				return g
			}
		}
	}
	return 0
}

// nextGen is the generation after gen (1 after none or the last).
func nextGen(gen uint32) uint32 { return gen%maxGen + 1 }

// forgetGen forgets the flows of family fam marked with generation gen, or
// with any generation if gen is 0, before that generation is used. A dump
// walks the kernel's whole conntrack hash (about 12 ms with 262,144
// buckets), which is why this runs once in 255 new networks and not for
// each. Without conntrack netlink no flow carries a mark: nothing to do.
func forgetGen(fam family, gen uint32) error {
	nf := netlink.InetFamily(unix.AF_INET)
	if fam == v6 {
		nf = unix.AF_INET6
	}
	_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, nf, markedWith{gen})
	if err != nil {
		return fmt.Errorf("forget %s flows of mark generation %d: %w", fam, gen, err)
	}
	return nil
}

type markedWith struct{ gen uint32 }

func (m markedWith) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	g := (flow.Mark & genMask) >> genShift
	if m.gen == 0 {
		return g != 0
	}
	return g == m.gen
}

// RecheckKnown starts a new generation of known connections, so that every
// connection takes the whole walk again at its next packet: the driver
// calls it when a bridge of ours came back with its rules still in place,
// which AddNetwork, seeing nothing to add, would not notice.
func (f *Firewall) RecheckKnown() error {
	what := func(fam family) string { return "recheck known " + fam.String() + " connections" }
	return f.changeEach(what, func(b *backend, st *ruleset, s *script) {
		if hasOurChains(st) {
			f.baseOps(b, st, s, hasNetworks(st, ""), true)
		}
	})
}
