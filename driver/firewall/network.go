package firewall

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mynet/mynet/protocol"
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
		return fmt.Errorf("network %s has IPv6 subnets: %w: %v", protocol.Short(n.ID), ErrIPv6Unavailable, f.v6err)
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
			return fmt.Errorf("add %s rules of network %s: %w", fam, protocol.Short(n.ID), err)
		}
	}
	return nil
}

// AddNetworks programs many networks with one iptables-restore per family
// instead of one each per network: a start makes every network's rules and
// sysctls what this version wants, whether they are missing (a reboot),
// partly gone or of an older layout. It returns the ids of the networks whose
// rules it changed. It rolls nothing back: on error the caller adds the
// networks one by one with AddNetwork (idempotent), which reports each
// failure on its own.
func (f *Firewall) AddNetworks(ns []Network) (changed []string, err error) {
	byFams := make([]map[family][]netip.Prefix, len(ns))
	for i := range ns {
		byFam, err := ns[i].validate(true)
		if err != nil {
			return nil, err
		}
		if len(byFam[v6]) > 0 && f.v6 == nil {
			return nil, fmt.Errorf("network %s has IPv6 subnets: %w: %v", protocol.Short(ns[i].ID), ErrIPv6Unavailable, f.v6err)
		}
		byFams[i] = byFam
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var undo []func() error // not used: see above
	for i := range ns {
		if err := f.networkSysctls(&ns[i], byFams[i], &undo); err != nil {
			return nil, err
		}
	}
	isChanged := make([]bool, len(ns))
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
			return nil, err
		}
		planned := make([]bool, len(ns))
		err = f.changeWithBase(b, func(st *ruleset, s *script) error {
			f.baseOps(b, st, s, true)
			idx := indexNetworks(st)
			for _, i := range mine {
				planned[i] = len(f.planNetwork(idx.rulesOf, s, &ns[i], fam, byFams[i][fam]).added) > 0
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("add %s rules of %d networks: %w", fam, len(mine), err)
		}
		for i, c := range planned {
			isChanged[i] = isChanged[i] || c
		}
	}
	for i, c := range isChanged {
		if c {
			changed = append(changed, ns[i].ID)
		}
	}
	return changed, nil
}

func (f *Firewall) applyNetwork(b *backend, n *Network, fam family, subnets []netip.Prefix) (*change, error) {
	var ch *change
	err := f.changeWithBase(b, func(st *ruleset, s *script) error {
		f.baseOps(b, st, s, true)
		ch = f.planNetwork(func(c chainRef, id12 string) []savedRule { return rulesOf(st, c, id12) }, s, n, fam, subnets)
		ch.b = b
		return nil
	})
	return ch, err
}

// rulesOf returns the rules of network id12 in a chain, whatever instance
// made them (the id alone names a network: a network is only ever served by
// one instance).
func rulesOf(st *ruleset, c chainRef, id12 string) []savedRule {
	ch := st.chain(c.table, c.name)
	if ch == nil {
		return nil
	}
	var out []savedRule
	for _, r := range ch.rules {
		if id, _, ok := commentNetwork(r.comment); ok && id == id12 {
			out = append(out, r)
		}
	}
	return out
}

// netIndex holds the rules of each network in each of our chains, from one
// pass over a ruleset: planning a thousand networks at a start would
// otherwise scan each shard chain once per network.
type netIndex map[chainRef]map[string][]savedRule

func indexNetworks(st *ruleset) netIndex {
	idx := netIndex{}
	for _, tbl := range ourTables {
		t := st.table(tbl)
		for _, cname := range t.order {
			c := chainRef{tbl, cname}
			for _, r := range t.chains[cname].rules {
				if id, _, ok := commentNetwork(r.comment); ok {
					if idx[c] == nil {
						idx[c] = map[string][]savedRule{}
					}
					idx[c][id] = append(idx[c][id], r)
				}
			}
		}
	}
	return idx
}

// rulesOf is the package's rulesOf, read from the index.
func (idx netIndex) rulesOf(c chainRef, id12 string) []savedRule { return idx[c][id12] }

// planNetwork adds to s what makes the rules of n what they should be, given
// the rules it has now in each chain (rulesIn), and returns what it adds for
// a rollback. Only the chains of the network's shard and their parents are
// looked at: a network's rules never go elsewhere.
func (f *Firewall) planNetwork(rulesIn func(c chainRef, id12 string) []savedRule, s *script, n *Network, fam family, subnets []netip.Prefix) *change {
	id12 := protocol.Short(n.ID)
	want := buildNetRules(n, fam, subnets, ownedComment(id12, f.owner))
	ch := &change{}
	// The network's rules in each shared chain, in order: when they differ
	// in any way (missing, stale, duplicated, reordered, made by an older
	// layout), all of them are deleted and appended again. Published ports
	// are AddPorts' business, unless the network is internal now.
	for _, c := range append(append(shardsOf(id12), shardedChains...), chainRef{tNat, chDNAT}) {
		if (c.name == chDNAT && !n.Internal) || !inFamily(c, fam) {
			continue
		}
		cur := rulesIn(c, id12)
		if sameRules(cur, want[c]) {
			continue
		}
		for _, r := range cur {
			s.deleteSaved(c.table, c.name, r)
		}
		for _, r := range want[c] {
			s.appendRule(r)
			ch.added = append(ch.added, r)
		}
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
	id12 := protocol.Short(n.ID)
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, b := range f.backends() {
		var removed, last, dropped bool
		err := f.change(b, func(st *ruleset, s *script) error {
			removed, last, dropped = false, !hasNetworks(st, id12), false
			for _, tbl := range ourTables {
				t := st.table(tbl)
				for _, cname := range t.order {
					for _, r := range rulesOf(st, chainRef{tbl, cname}, id12) {
						s.deleteSaved(tbl, cname, r)
						removed = true
					}
				}
			}
			if removed && last && !st.stale {
				// The last network, on an exact copy: the jumps into ours
				// go in the same restore.
				for _, h := range entryHeads(b.fam, false) {
					f.headOps(st, s, h)
				}
				dropped = true
			}
			return nil
		})
		if err == nil && removed && last && !dropped {
			err = f.dropUnusedEntries(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s rules of network %s: %w", b.fam, id12, err))
		}
	}
	return errors.Join(errs...)
}

// dropUnusedEntries removes the jumps from the built-in chains into ours
// once no network has rules (the last one went, or the first one's rules
// were rolled back): the host's packets then cross none of ours. The copy
// answers when it still shows a network (the periodic EnsureBase catches a
// stale one); else the ruleset is read, since another instance may have
// made a network since.
func (f *Firewall) dropUnusedEntries(b *backend) error {
	st, err := f.state(b)
	if err != nil || hasNetworks(st, "") {
		return err
	}
	return f.changeWithBase(b, func(st *ruleset, s *script) error {
		if !hasNetworks(st, "") {
			for _, h := range entryHeads(b.fam, false) {
				f.headOps(st, s, h)
			}
		}
		return nil
	})
}

// programmed reports whether network id12 has its rules in st: a bridge
// network that is not internal always has its hairpin rule.
func programmed(st *ruleset, id12 string) bool {
	return len(rulesOf(st, chainRef{tNat, shardChain(chPost, shard(id12))}, id12)) > 0
}
