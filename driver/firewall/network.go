package firewall

import (
	"errors"
	"fmt"
	"net/netip"
)

// AddNetwork programs all rules of one network (idempotent: a second call
// with the same network changes nothing). On error it rolls back what this
// call added.
func (f *Firewall) AddNetwork(n Network) (retErr error) {
	byFam, err := n.validate(true)
	if err != nil {
		return err
	}
	if len(byFam[v6]) > 0 && f.v6 == nil {
		return fmt.Errorf("network %s has IPv6 subnets: %w: %v", shortID(n.ID), ErrIPv6Unavailable, f.v6err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()

	var undo []func() error
	defer func() {
		if retErr == nil {
			return
		}
		errs := []error{retErr}
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				errs = append(errs, err)
			}
		}
		retErr = errors.Join(errs...)
	}()

	if err := f.networkSysctls(&n, byFam, &undo); err != nil {
		return err
	}

	for _, fam := range []family{v4, v6} {
		if len(byFam[fam]) == 0 {
			continue
		}
		b, err := f.backend(fam)
		if err != nil {
			return err
		}
		ch, err := f.applyNetwork(b, &n, fam, byFam[fam])
		if ch != nil {
			undo = append(undo, func() error { return f.undo(ch) })
		}
		if err != nil {
			return fmt.Errorf("add %s rules of network %s: %w", fam, shortID(n.ID), err)
		}
	}
	return nil
}

// AddNetworks programs many networks with one iptables-restore per family
// instead of one each per network (a start after a reboot re-adds every
// network). It rolls nothing back: on error the caller adds the networks one
// by one with AddNetwork (idempotent), which reports each failure on its own.
func (f *Firewall) AddNetworks(ns []Network) error {
	byFams := make([]map[family][]netip.Prefix, len(ns))
	for i := range ns {
		byFam, err := ns[i].validate(true)
		if err != nil {
			return err
		}
		if len(byFam[v6]) > 0 && f.v6 == nil {
			return fmt.Errorf("network %s has IPv6 subnets: %w: %v", shortID(ns[i].ID), ErrIPv6Unavailable, f.v6err)
		}
		byFams[i] = byFam
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var undo []func() error // not used: see above
	for i := range ns {
		if err := f.networkSysctls(&ns[i], byFams[i], &undo); err != nil {
			return err
		}
	}
	for _, fam := range []family{v4, v6} {
		var mine []int
		for i := range ns {
			if len(byFams[i][fam]) > 0 {
				mine = append(mine, i)
			}
		}
		if len(mine) == 0 {
			continue
		}
		b, err := f.backend(fam)
		if err != nil {
			return err
		}
		err = f.change(b, func(st *ruleset, s *script) error {
			f.baseOps(b, st, s)
			for _, i := range mine {
				f.planNetwork(b, st, s, &ns[i], fam, byFams[i][fam])
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("add %s rules of %d networks: %w", fam, len(mine), err)
		}
	}
	return nil
}

func (f *Firewall) applyNetwork(b *backend, n *Network, fam family, subnets []netip.Prefix) (*change, error) {
	var ch *change
	err := f.change(b, func(st *ruleset, s *script) error {
		f.baseOps(b, st, s)
		ch = f.planNetwork(b, st, s, n, fam, subnets)
		return nil
	})
	return ch, err
}

// rulesOf returns the rules with the given comment in a chain.
func rulesOf(st *ruleset, c chainRef, comment string) []savedRule {
	ch := st.chain(c.table, c.name)
	if ch == nil {
		return nil
	}
	var out []savedRule
	for _, r := range ch.rules {
		if r.comment == comment {
			out = append(out, r)
		}
	}
	return out
}

// planNetwork adds to s what makes the rules of n in st what they should
// be, and returns what it adds for a rollback.
func (f *Firewall) planNetwork(b *backend, st *ruleset, s *script, n *Network, fam family, subnets []netip.Prefix) *change {
	id12 := shortID(n.ID)
	comment := netComment(id12)
	nr := buildNetRules(n, fam, subnets)
	ch := &change{b: b}

	wantOwned := map[string]bool{}
	for _, oc := range nr.owned {
		wantOwned[oc.name] = true
		cur := st.chain(oc.table, oc.name)
		if cur == nil {
			s.newChain(oc.table, oc.name)
			ch.created = append(ch.created, chainRef{oc.table, oc.name})
		} else if sameRules(cur.rules, oc.rules) {
			continue
		} else {
			s.flushChain(oc.table, oc.name)
		}
		for _, r := range oc.rules {
			s.appendRule(r)
		}
	}
	// The network's rules in each shared chain, in order: when they differ
	// in any way (missing, stale, duplicated, reordered), all of them are
	// deleted and appended again. Published ports are AddPorts' business,
	// unless the network is internal now.
	for _, c := range append(shardsOf(id12), chainRef{tNat, chDNAT}) {
		if c.name == chDNAT && !n.Internal {
			continue
		}
		cur := rulesOf(st, c, comment)
		want := nr.byChain[c]
		if sameRules(cur, want) {
			continue
		}
		for _, r := range cur {
			s.deleteSaved(c.table, c.name, r)
		}
		for _, r := range want {
			s.appendRule(r)
			ch.added = append(ch.added, r)
		}
	}
	// An owned chain no longer wanted (the network is no longer internal
	// with several subnets); its jumps were deleted above, in the same table
	// section.
	if c := pfxInternal + id12; !wantOwned[c] && st.chain(tFilter, c) != nil {
		s.flushChain(tFilter, c)
		s.deleteChain(tFilter, c)
	}
	return ch
}

func sameRules(cur []savedRule, want []rule) bool {
	if len(cur) != len(want) {
		return false
	}
	for i, r := range want {
		if cur[i].key != r.key() {
			return false
		}
	}
	return true
}

// RemoveNetwork removes every rule of the network, its published ports
// included. Only n.ID is used, so Network{ID: id} from OwnedNetworks is
// enough. Removing twice is fine.
func (f *Firewall) RemoveNetwork(n Network) error {
	if err := validID(n.ID); err != nil {
		return err
	}
	id12 := shortID(n.ID)
	comment := netComment(id12)
	own := pfxInternal + id12
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, b := range f.backends() {
		err := f.change(b, func(st *ruleset, s *script) error {
			for _, tbl := range []string{tFilter, tNat} {
				t := st.table(tbl)
				for _, cname := range t.order {
					if cname == own {
						continue // flushed below
					}
					for _, r := range t.chains[cname].rules {
						if r.comment == comment {
							s.deleteSaved(tbl, cname, r)
						}
					}
				}
			}
			if st.chain(tFilter, own) != nil {
				s.flushChain(tFilter, own)
				s.deleteChain(tFilter, own)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s rules of network %s: %w", b.fam, id12, err))
		}
	}
	return errors.Join(errs...)
}

// programmed reports whether network id12 has its rules in st: a bridge
// network that is not internal always has its hairpin rule.
func programmed(st *ruleset, id12 string) bool {
	return len(rulesOf(st, chainRef{tNat, shardChain(chPost, shard(id12))}, netComment(id12))) > 0
}
