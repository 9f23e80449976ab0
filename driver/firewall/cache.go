package firewall

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The cache: each backend keeps the ruleset its last iptables-save returned,
// and every change we make through it is replayed on that copy. The copy is
// exact as long as the nf_tables generation (gen.go) is the one it was read or
// last brought up to date at. After our own iptables-restore the generation
// must have grown by exactly the number of table sections it committed.
//
// A change by someone else (Docker puts its DOCKER-USER jump back at the top
// of FORWARD after every network it creates, whatever the driver) bumps the
// generation. The copy then stays in use for our own chains (MYNET-*, which
// only mynet writes) but is marked stale: the built-in chains may have
// moved, so removals leave the order there alone, while adding a network or
// published ports, EnsureBase, Owned and Cleanup read the ruleset again
// (the driver calls EnsureBase right after each such change: WatchRuleset). A change planned on
// the stale copy touches only the rules of the networks it is about. If
// someone did change them, or made a chain the copy lacks (another mynet
// instance in the same namespace), the iptables-restore fails (a rule to
// delete is gone, a chain is missing or already there) and the call reads
// the ruleset and tries once more; the periodic EnsureBase reads it in any
// case.
//
// So a call reads nothing and runs one iptables-restore per family it
// changes, whatever the number of networks.

// state returns the ruleset of b to plan a change of our chains on: the
// cached copy, stale or not, else a fresh read.
func (f *Firewall) state(b *backend) (*ruleset, error) {
	if b.cached != nil && f.genKnown {
		if g, err := rulesetGeneration(); err == nil {
			if g != f.gen {
				f.markStale(g)
			}
			return b.cached, nil
		}
	}
	return f.refresh(b)
}

// exact returns the ruleset of b as it is now, built-in chains included.
func (f *Firewall) exact(b *backend) (*ruleset, error) {
	if b.cached != nil && f.genKnown && !b.cached.stale {
		if g, err := rulesetGeneration(); err == nil && g == f.gen {
			return b.cached, nil
		}
	}
	return f.refresh(b)
}

// markStale records that someone else changed the ruleset: the copies
// now stand for our chains only.
func (f *Firewall) markStale(g uint32) {
	for _, b := range []*backend{f.v4, f.v6} {
		if b != nil && b.cached != nil {
			b.cached.stale = true
		}
	}
	f.gen = g
}

// change plans with plan on the ruleset of b and commits the result. When
// the restore fails on a stale copy, it reads the ruleset and plans once
// more.
func (f *Firewall) change(b *backend, plan func(st *ruleset, s *script) error) error {
	st, err := f.state(b)
	return f.changeFrom(b, st, err, plan)
}

// changeWithBase is change for a plan that also puts the base layout right
// (baseOps): that needs the built-in chains as they are, so a stale copy is
// read again first. Otherwise a network made just after Docker inserted its
// rules at the top of FORWARD would leave them above ours until the next
// EnsureBase.
func (f *Firewall) changeWithBase(b *backend, plan func(st *ruleset, s *script) error) error {
	st, err := f.exact(b)
	return f.changeFrom(b, st, err, plan)
}

func (f *Firewall) changeFrom(b *backend, st *ruleset, err error, plan func(st *ruleset, s *script) error) error {
	for attempt := 0; ; attempt++ {
		if err != nil {
			return err
		}
		s := newScript()
		if err := plan(st, s); err != nil {
			return err
		}
		err = f.commit(b, s, st)
		if err == nil || !st.stale || attempt > 0 {
			return err
		}
		f.log.Info("iptables-restore failed on a copy of the ruleset older than others' changes; reading the ruleset and trying again", "family", b.fam.String(), "err", err)
		st, err = f.refresh(b)
	}
}

// changeEach plans with plan on the exact ruleset of each family (built-in
// chains included) and commits the result; what(family) names the work in
// errors. A family whose plan adds nothing runs no process.
func (f *Firewall) changeEach(what func(family) string, plan func(b *backend, st *ruleset, s *script)) error {
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
		plan(b, st, s)
		if err := f.commit(b, s, st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what(b.fam), err))
		}
	}
	return errors.Join(errs...)
}

// refresh reads the ruleset of b, removes what an older mynet layout left
// (see obsoleteChain) and caches the result.
func (f *Firewall) refresh(b *backend) (*ruleset, error) {
	for attempt := 0; ; attempt++ {
		g, genErr := b.generation()
		st, err := b.save()
		if err != nil {
			f.forget()
			return nil, err
		}
		s := newScript()
		cleanupOps(st, s, obsoleteChain, false)
		if !s.empty() && attempt == 0 {
			f.log.Info("removing the firewall chains of an older mynet version; their networks are re-added", "family", b.fam.String())
			if err := b.apply(s); err != nil {
				f.forget()
				return nil, fmt.Errorf("remove old chains: %w", err)
			}
			continue
		}
		if genErr != nil {
			b.cached = nil
			return st, nil
		}
		if !f.genKnown || g != f.gen {
			f.markStale(g) // the other family's copy is older
			f.genKnown = true
		}
		b.cached = st
		return st, nil
	}
}

// forget drops every cached copy.
func (f *Firewall) forget() {
	for _, b := range []*backend{f.v4, f.v6} {
		if b != nil {
			b.cached = nil
		}
	}
	f.genKnown = false
}

// commit applies s, planned against st, and keeps the cache in step.
func (f *Firewall) commit(b *backend, s *script, st *ruleset) error {
	if s.empty() {
		return nil
	}
	cached := b.cached != nil && b.cached == st && f.genKnown
	var before uint32
	if cached {
		g, err := rulesetGeneration()
		if cached = err == nil; cached && g != f.gen {
			f.markStale(g)
		}
		before = g
	}
	if err := b.apply(s); err != nil {
		f.forget()
		return err
	}
	if !cached {
		f.forget()
		return nil
	}
	after, err := rulesetGeneration()
	if err != nil {
		f.forget()
		return nil
	}
	if err := st.replay(s); err != nil {
		f.log.Warn("firewall cache out of step; reading the ruleset again next time", "err", err)
		f.forget()
		return nil
	}
	if after != before+uint32(s.tables()) {
		f.markStale(after) // someone else committed meanwhile
	}
	f.gen = after
	if f.verifyCache {
		return f.checkCache(b)
	}
	return nil
}

// generation is rulesetGeneration for the nf_tables backend; the legacy one
// has none.
func (b *backend) generation() (uint32, error) {
	if !b.nft {
		return 0, fmt.Errorf("%s: legacy backend: no ruleset generation", b.name)
	}
	return rulesetGeneration()
}

// replay applies s to rs the way iptables-restore --noflush applied it to
// the kernel.
func (rs *ruleset) replay(s *script) error {
	for _, tbl := range s.order {
		t := rs.tables[tbl]
		if t == nil {
			t = &table{name: tbl, chains: map[string]*chain{}}
			rs.tables[tbl] = t
		}
		for _, op := range s.ops[tbl] {
			c := t.chains[op.chain]
			if c == nil && op.kind != opNewChain && op.kind != opAppend && op.kind != opInsert {
				return fmt.Errorf("%s: %s: no such chain", tbl, op)
			}
			if c == nil {
				// A built-in chain iptables creates on first use, or a new chain.
				c = &chain{name: op.chain, builtin: op.kind != opNewChain}
				t.chains[op.chain] = c
				t.order = append(t.order, op.chain)
			}
			switch op.kind {
			case opNewChain, opFlush:
				c.rules = nil
			case opDeleteChain:
				if len(c.rules) > 0 {
					return fmt.Errorf("%s: %s: chain not empty", tbl, op)
				}
				delete(t.chains, op.chain)
				t.order = slices.DeleteFunc(t.order, func(n string) bool { return n == op.chain })
			case opAppend:
				c.rules = append(c.rules, newSavedRule(op.text, op.toks))
			case opInsert:
				if op.pos < 1 || op.pos > len(c.rules)+1 {
					return fmt.Errorf("%s: %s: position out of range", tbl, op)
				}
				c.rules = slices.Insert(c.rules, op.pos-1, newSavedRule(op.text, op.toks))
			case opDelete:
				key := ruleKey(op.toks)
				i := slices.IndexFunc(c.rules, func(r savedRule) bool { return r.key == key })
				if i < 0 {
					return fmt.Errorf("%s: %s: no such rule", tbl, op)
				}
				c.rules = slices.Delete(c.rules, i, i+1)
			}
		}
	}
	return nil
}

// checkCache compares the cached copy of b with a fresh read (tests): every
// chain of the tables we use, rule by rule.
func (f *Firewall) checkCache(b *backend) error {
	fresh, err := b.save()
	if err != nil {
		return err
	}
	b.runs-- // not the caller's work
	cached := b.cached
	for _, tbl := range ourTables {
		ct, ft := cached.table(tbl), fresh.table(tbl)
		for name := range ct.chains {
			if ft.chains[name] == nil && (!cached.stale || strings.HasPrefix(name, chainPrefix)) {
				return fmt.Errorf("firewall cache: %s %s: chain %s cached, not in the kernel", b.fam, tbl, name)
			}
		}
		for name, fc := range ft.chains {
			if cached.stale && !strings.HasPrefix(name, chainPrefix) {
				continue // others may have changed it since
			}
			cc := ct.chains[name]
			if cc == nil && fc.builtin && len(fc.rules) == 0 {
				continue // created with its table by iptables; never read
			}
			if cc == nil {
				return fmt.Errorf("firewall cache: %s %s: chain %s missing from the cache", b.fam, tbl, name)
			}
			var ck, fk []string
			for _, r := range cc.rules {
				ck = append(ck, r.key)
			}
			for _, r := range fc.rules {
				fk = append(fk, r.key)
			}
			if !slices.Equal(ck, fk) {
				return fmt.Errorf("firewall cache: %s %s chain %s: cached %q, kernel %q", b.fam, tbl, name, ck, fk)
			}
		}
	}
	return nil
}
