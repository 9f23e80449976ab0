package firewall

import (
	"strings"
)

// Cleanup removes all our chains and the jumps into them, in both families.
func (f *Firewall) Cleanup() error {
	what := func(fam family) string { return "clean up " + fam.String() + " rules" }
	ours := func(name string) bool { return strings.HasPrefix(name, chainPrefix) }
	return f.changeEach(what, func(_ *backend, st *ruleset, s *script) {
		cleanupOps(st, s, ours, true)
	})
}

// cleanupOps adds to s the removal of the chains gone(name) selects and of
// the rules in other chains that jump to them; with everything, also of
// every other rule of ours (comment "mynet" or "mynet:<id>").
func cleanupOps(st *ruleset, s *script, gone func(string) bool, everything bool) {
	for _, tbl := range ourTables {
		t := st.table(tbl)
		var del []string
		for _, cname := range t.order {
			if gone(cname) {
				del = append(del, cname)
				continue
			}
			for _, r := range t.chains[cname].rules {
				ours := r.comment == commentBase || strings.HasPrefix(r.comment, commentPrefix)
				if gone(r.target) || (everything && ours) {
					s.deleteSaved(tbl, cname, r)
				}
			}
		}
		for _, c := range del {
			s.flushChain(tbl, c)
		}
		for _, c := range del {
			s.deleteChain(tbl, c)
		}
	}
}

// obsoleteChain reports chains of an older mynet layout (chains of one
// network): they are removed on sight and their networks re-added in the
// layout of doc.go.
func obsoleteChain(name string) bool {
	for _, p := range []string{"MYNET-F-", "MYNET-S-", "MYNET-D-", "MYNET-I-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == "MYNET-ISO-OUT" || name == "MYNET-ISO-IN"
}
