package firewall

import (
	"errors"
	"fmt"
	"strings"
)

// Cleanup removes all our chains and the jumps into them, in both families.
func (f *Firewall) Cleanup() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, b := range f.backends() {
		st, err := f.exact(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s := newScript()
		cleanupOps(st, s, func(name string) bool { return strings.HasPrefix(name, chainPrefix) }, true)
		if err := f.commit(b, s, st); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s rules: %w", b.fam, err))
		}
	}
	return errors.Join(errs...)
}

// cleanupOps adds to s the removal of the chains gone(name) selects and of
// the rules in other chains that jump to them; with everything, also of
// every other rule of ours (comment "mynet" or "mynet:<id>").
func cleanupOps(st *ruleset, s *script, gone func(string) bool, everything bool) {
	for _, tbl := range []string{tFilter, tNat} {
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

// obsoleteChain reports chains of an older mynet layout (a chain per
// network and three per bridge network): they are removed on sight and their
// networks re-added in the layout of doc.go.
func obsoleteChain(name string) bool {
	for _, p := range []string{"MYNET-F-", "MYNET-S-", "MYNET-D-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == "MYNET-ISO-OUT" || name == "MYNET-ISO-IN"
}
