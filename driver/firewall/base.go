package firewall

import (
	"strings"
)

// EnsureBase creates our chains if missing and puts the jumps from the
// built-in chains back at the top (Docker inserts its own rules at the top
// when it creates a bridge network). It reads the ruleset (one iptables-save
// per family) unless nobody changed it since our last look, so it is also
// what brings the cache back in step after others' changes; call it at
// start and periodically. IPv6 chains are only looked after once an IPv6
// network has created them. The jumps from the built-in chains are there
// only while some network has rules (see entryHeads).
func (f *Firewall) EnsureBase() error {
	what := func(fam family) string { return "ensure base " + fam.String() + " chains" }
	return f.changeEach(what, func(b *backend, st *ruleset, s *script) {
		if b.fam == v6 && !hasOurChains(st) {
			return
		}
		f.baseOps(b, st, s, hasNetworks(st, ""))
	})
}

// hasNetworks reports whether st holds rules of a network other than
// except (a 12-character id, or ""), made by any mynet instance.
func hasNetworks(st *ruleset, except string) bool {
	for _, tbl := range ourTables {
		t := st.table(tbl)
		for _, cname := range t.order {
			for _, r := range t.chains[cname].rules {
				if id, _, ok := commentNetwork(r.comment); ok && id != except {
					return true
				}
			}
		}
	}
	return false
}

func hasOurChains(st *ruleset) bool {
	for _, tbl := range ourTables {
		for _, c := range st.table(tbl).order {
			if strings.HasPrefix(c, chainPrefix) {
				return true
			}
		}
	}
	return false
}

// baseOps adds to s what the base layout of one family lacks in st, with
// the jumps from the built-in chains if entered, else without them.
func (f *Firewall) baseOps(b *backend, st *ruleset, s *script, entered bool) {
	for _, c := range baseChains(b.fam) {
		if st.chain(c.table, c.name) == nil {
			s.newChain(c.table, c.name)
		}
	}
	for _, h := range baseHeads(b.fam, f.foreign, entered, f.bridgedThroughIptables(b.fam)) {
		if st.stale && !strings.HasPrefix(h.chain, chainPrefix) {
			continue // others changed the built-in chains: EnsureBase's job
		}
		if f.headOps(st, s, h) {
			f.log.Info("moving firewall rules back to the top", "family", b.fam.String(), "table", h.table, "chain", h.chain)
		}
	}
}

// headOps makes h.rules the first rules of its chain (after a leading
// DOCKER-USER jump where allowed), each once, and removes other rules of
// ours without a network there. It reports whether rules had to move.
func (f *Firewall) headOps(st *ruleset, s *script, h head) (moved bool) {
	ch := st.chain(h.table, h.chain)
	var cur []savedRule
	if ch != nil {
		cur = ch.rules
	}
	offset := 0
	if h.afterDockerUser {
		for offset < len(cur) && cur[offset].target == dockerUser {
			offset++
		}
	}
	want := map[string]bool{}
	for _, r := range h.rules {
		want[r.key()] = true
	}
	inPlace := len(cur) >= offset+len(h.rules)
	for i := 0; inPlace && i < len(h.rules); i++ {
		inPlace = cur[offset+i].key == h.rules[i].key()
	}
	var stale []savedRule
	found := 0
	for i, r := range cur {
		switch {
		case want[r.key]:
			found++
			if !inPlace || i < offset || i >= offset+len(h.rules) {
				stale = append(stale, r) // moved or duplicate
			}
		case r.comment == commentBase:
			stale = append(stale, r) // no longer wanted
		}
	}
	for _, r := range stale {
		s.deleteSaved(h.table, h.chain, r)
	}
	if inPlace {
		return false
	}
	for i, r := range h.rules {
		s.insertRule(r, offset+1+i)
	}
	return found > 0
}
