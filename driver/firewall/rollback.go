package firewall

import (
	"fmt"
)

// change records what one commit added, for rollback.
type change struct {
	b       *backend
	created []chainRef
	added   []rule
}

// undo removes what ch added and is still there.
func (f *Firewall) undo(ch *change) error {
	if ch == nil || (len(ch.created) == 0 && len(ch.added) == 0) {
		return nil
	}
	created := map[string]bool{}
	for _, c := range ch.created {
		created[c.table+"\x01"+c.name] = true
	}
	err := f.change(ch.b, func(st *ruleset, s *script) error {
		for _, r := range ch.added {
			if !created[r.table+"\x01"+r.chain] && st.count(r.table, r.chain, r.key()) > 0 {
				s.deleteRule(r)
			}
		}
		for _, c := range ch.created {
			if st.chain(c.table, c.name) != nil {
				s.flushChain(c.table, c.name)
			}
		}
		for _, c := range ch.created {
			if st.chain(c.table, c.name) != nil {
				s.deleteChain(c.table, c.name)
			}
		}
		return nil
	})
	if err == nil {
		err = f.dropUnusedEntries(ch.b)
	}
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	return nil
}
