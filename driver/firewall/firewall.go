// Package firewall programs, for each mynet bridge network, what Docker's
// bridge driver programs for its own networks (outbound NAT, forwarding
// accepts, inter-container on/off, isolation, --internal, published ports),
// in chains of our own that the built-in chains jump to.
//
// # Chain layout (same in iptables and ip6tables)
//
//	table   chain                 jumped from                           content
//	filter  MYNET-FORWARD         FORWARD rule 1 (2 after DOCKER-USER)  -j MYNET-ISO-1, then -j MYNET-FORWARD-<s> for s in 0..f
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

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/mynet/mynet/driver/ports"
)

// Network is one mynet bridge network.
type Network struct {
	ID         string         // Docker network id; the first 12 chars go into rule comments
	Bridge     string         // Linux bridge name (<= 15 bytes, validated by the caller)
	Subnets    []netip.Prefix // the network's IPv4 and/or IPv6 subnets
	ICC        bool           // inter-container traffic allowed (com.docker.network.bridge.enable_icc)
	Masquerade bool           // outbound NAT (enable_ip_masquerade); ignored when Internal
	Internal   bool           // --internal: traffic only within the subnet(s), nothing in or out
}

// PortMapping is one published port: a host port that driver/ports holds.
// HostIP zero or unspecified means every host address of ContainerIP's family.
type PortMapping = ports.Binding

// OwnedNetwork is a network that has rules of ours.
type OwnedNetwork struct {
	ID     string // the 12-character id found in the rule comments
	Bridge string
}

// Config tunes a Firewall; the zero value is the default.
type Config struct {
	// ForeignBridges are iptables interface patterns of bridges that are not
	// ours and must be isolated from ours; nil means DefaultForeignBridges.
	ForeignBridges []string
	// SysctlRoot replaces /proc/sys (tests).
	SysctlRoot string
}

var (
	// ErrIPv6Unavailable: the network or port needs IPv6 rules and
	// ip6tables is missing or does not work.
	ErrIPv6Unavailable = errors.New("IPv6 firewall unavailable")
	// ErrPortConflict: the host port is already published by mynet.
	ErrPortConflict = errors.New("host port already published")
	// ErrNetworkNotProgrammed: AddPorts on a network without chains.
	ErrNetworkNotProgrammed = errors.New("network has no firewall rules")
	// ErrInvalid: a Network or PortMapping that cannot be programmed.
	ErrInvalid = errors.New("invalid firewall request")
)

// Firewall programs the rules. Its methods are safe for concurrent use.
type Firewall struct {
	mu         sync.Mutex
	log        *slog.Logger
	v4, v6     *backend
	v6err      error
	foreign    []string
	sysctlRoot string

	// The cached rulesets (backend.cached) are exact at this nf_tables
	// generation; see cache.go.
	gen      uint32
	genKnown bool
	// verifyCache: after each change, compare the cached ruleset with a
	// fresh iptables-save (tests).
	verifyCache bool
}

// New returns a Firewall using iptables, and ip6tables when it is available
// (else IPv6 rules are refused with ErrIPv6Unavailable).
func New(logger *slog.Logger) (*Firewall, error) {
	return NewWithConfig(logger, Config{})
}

// NewWithConfig is New with settings.
func NewWithConfig(logger *slog.Logger, cfg Config) (*Firewall, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Firewall{log: logger, foreign: DefaultForeignBridges, sysctlRoot: "/proc/sys"}
	if cfg.ForeignBridges != nil {
		for _, p := range cfg.ForeignBridges {
			if err := validIfacePattern(p); err != nil {
				return nil, err
			}
		}
		f.foreign = slices.Clone(cfg.ForeignBridges)
	}
	if cfg.SysctlRoot != "" {
		f.sysctlRoot = cfg.SysctlRoot
	}
	var err error
	if f.v4, err = newBackend(v4); err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	st, err := f.v4.save()
	if err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	if st.legacyToo {
		// Docker (or another program) programs the legacy backend: its
		// FORWARD policy and rules there apply too, and our accepts in
		// the nf_tables backend cannot override a DROP there.
		f.log.Warn("iptables-legacy tables exist next to the nf_tables ones we use: run Docker and mynet with the same iptables backend")
	}
	f.v6, f.v6err = newBackend(v6)
	if f.v6err == nil {
		if _, statErr := os.Stat(filepath.Join(f.sysctlRoot, "net/ipv6")); statErr != nil {
			f.v6err = fmt.Errorf("kernel without IPv6: %w", statErr)
		} else if _, saveErr := f.v6.save(); saveErr != nil {
			f.v6err = saveErr
		}
	}
	if f.v6err != nil {
		f.v6 = nil
		f.log.Info("ip6tables unavailable: IPv6 networks and ports will be refused", "err", f.v6err)
	}
	return f, nil
}

// HasIPv6 reports whether IPv6 rules can be programmed.
func (f *Firewall) HasIPv6() bool { return f.v6 != nil }

func (f *Firewall) backends() []*backend {
	if f.v6 != nil {
		return []*backend{f.v4, f.v6}
	}
	return []*backend{f.v4}
}

func (f *Firewall) backend(fam family) (*backend, error) {
	if fam == v4 {
		return f.v4, nil
	}
	if f.v6 == nil {
		return nil, fmt.Errorf("%w: %v", ErrIPv6Unavailable, f.v6err)
	}
	return f.v6, nil
}

// EnsureBase creates our chains if missing and puts the jumps from the
// built-in chains back at the top (Docker inserts its own rules at the top
// when it creates a bridge network). It reads the ruleset (one iptables-save
// per family) unless nobody changed it since our last look, so it is also
// what brings the cache back in step after others' changes; call it at
// start and periodically. IPv6 chains are only looked after once an IPv6
// network has created them.
func (f *Firewall) EnsureBase() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, b := range f.backends() {
		st, err := f.exact(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.fam == v6 && !hasOurChains(st) {
			continue
		}
		s := newScript()
		f.baseOps(b, st, s)
		if err := f.commit(b, s, st); err != nil {
			errs = append(errs, fmt.Errorf("ensure base %s chains: %w", b.fam, err))
		}
	}
	return errors.Join(errs...)
}

func hasOurChains(st *ruleset) bool {
	for _, tbl := range []string{tFilter, tNat} {
		for _, c := range st.table(tbl).order {
			if strings.HasPrefix(c, chainPrefix) {
				return true
			}
		}
	}
	return false
}

// baseOps adds to s what the base layout of one family lacks in st.
func (f *Firewall) baseOps(b *backend, st *ruleset, s *script) {
	for _, c := range baseChains() {
		if st.chain(c.table, c.name) == nil {
			s.newChain(c.table, c.name)
		}
	}
	for _, h := range baseHeads(f.foreign) {
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
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	return nil
}

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

// networkSysctls sets what the rules of n need from the kernel, adding to
// undo how to put back what it changed.
func (f *Firewall) networkSysctls(n *Network, byFam map[family][]netip.Prefix, undo *[]func() error) error {
	if !n.ICC {
		for fam, name := range map[family]string{v4: "bridge-nf-call-iptables", v6: "bridge-nf-call-ip6tables"} {
			if len(byFam[fam]) == 0 {
				continue
			}
			if err := f.ensureBridgeNF(name); err != nil {
				return fmt.Errorf("network %s with enable_icc=false: %w", shortID(n.ID), err)
			}
		}
	}
	if !n.Internal && len(byFam[v4]) > 0 {
		// 127.0.0.1:HOSTPORT is translated to a container address: the
		// kernel routes a 127/8 source out of the bridge only with this.
		key := "net/ipv4/conf/" + n.Bridge + "/route_localnet"
		prev, changed, err := f.setSysctl(key, "1")
		if err != nil {
			return fmt.Errorf("network %s: %w", shortID(n.ID), err)
		}
		if changed {
			*undo = append(*undo, func() error { _, _, err := f.setSysctl(key, prev); return err })
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

// AddPorts publishes ports of a container of network n: all or nothing.
// Adding a port that is already published the same way is a no-op; a host
// port (protocol, address, port) published by mynet to another target is
// refused with ErrPortConflict. Host ports of Docker's own networks are not
// seen here: hold the host port bound (as Docker does) to detect those.
func (f *Firewall) AddPorts(n Network, ports []PortMapping) (retErr error) {
	if _, err := n.validate(true); err != nil {
		return err
	}
	if n.Internal {
		return fmt.Errorf("%w: network %s is internal: no published ports", ErrInvalid, shortID(n.ID))
	}
	byFam, err := n.portsByFamily(ports)
	if err != nil {
		return err
	}
	id12 := shortID(n.ID)
	for fam := range byFam {
		if _, err := f.backend(fam); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()

	var undo []*change
	defer func() {
		if retErr == nil {
			return
		}
		errs := []error{retErr}
		for i := len(undo) - 1; i >= 0; i-- {
			if err := f.undo(undo[i]); err != nil {
				errs = append(errs, err)
			}
		}
		retErr = errors.Join(errs...)
	}()

	for _, fam := range []family{v4, v6} {
		pms := byFam[fam]
		if len(pms) == 0 {
			continue
		}
		b, _ := f.backend(fam)
		ch := &change{b: b}
		hasSCTP := false
		err := f.change(b, func(st *ruleset, s *script) error {
			if !programmed(st, id12) {
				return fmt.Errorf("%w: network %s (%s): call AddNetwork first", ErrNetworkNotProgrammed, id12, fam)
			}
			f.baseOps(b, st, s)
			ch.added, hasSCTP = nil, false
			for i, p := range pms {
				r := portRule(id12, p)
				if err := checkConflict(st, r, pms[:i]); err != nil {
					return err
				}
				if st.count(tNat, chDNAT, r.key()) == 0 {
					s.appendRule(r)
					ch.added = append(ch.added, r)
					hasSCTP = hasSCTP || p.Proto == "sctp"
				}
			}
			return nil
		})
		undo = append(undo, ch)
		if errors.Is(err, ErrNetworkNotProgrammed) || errors.Is(err, ErrPortConflict) {
			return err
		}
		if err != nil {
			if hasSCTP {
				return fmt.Errorf("publish %s ports of network %s (includes sctp; the kernel may lack sctp support): %w", fam, id12, err)
			}
			return fmt.Errorf("publish %s ports of network %s: %w", fam, id12, err)
		}
	}
	return nil
}

// checkConflict looks for another DNAT rule of ours (or an earlier port of
// the same request) that takes the same protocol and host port on an
// overlapping host address.
func checkConflict(st *ruleset, r rule, earlier []PortMapping) error {
	pp, _ := parsePortRule(r.args)
	overlaps := func(o parsedPort) bool {
		return o.proto == pp.proto && o.port == pp.port && (o.hostIP == "" || pp.hostIP == "" || o.hostIP == pp.hostIP)
	}
	for _, e := range earlier {
		er := portRule("", e)
		if o, _ := parsePortRule(er.args); overlaps(o) && o.to != pp.to {
			return fmt.Errorf("%w: %s port %s requested twice (to %s and %s)", ErrPortConflict, pp.proto, pp.port, o.to, pp.to)
		}
	}
	ch := st.chain(tNat, chDNAT)
	if ch == nil {
		return nil
	}
	for _, e := range ch.rules {
		o, ok := parsePortRule(e.tokens)
		if !ok || !overlaps(o) || e.key == r.key() {
			continue
		}
		host := o.hostIP
		if host == "" {
			host = "*"
		}
		return fmt.Errorf("%w: %s %s:%s is published by network %s to %s", ErrPortConflict, o.proto, host, o.port, strings.TrimPrefix(e.comment, commentPrefix), o.to)
	}
	return nil
}

// RemovePorts removes published ports; ports that are not there are
// ignored.
func (f *Firewall) RemovePorts(n Network, ports []PortMapping) error {
	if err := validID(n.ID); err != nil {
		return err
	}
	byFam, err := n.portsByFamily(ports)
	if err != nil {
		return err
	}
	id12 := shortID(n.ID)
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, fam := range []family{v4, v6} {
		pms := byFam[fam]
		if len(pms) == 0 {
			continue
		}
		b, err := f.backend(fam)
		if err != nil {
			continue // nothing of that family can exist
		}
		err = f.change(b, func(st *ruleset, s *script) error {
			for _, p := range pms {
				r := portRule(id12, p)
				if st.count(tNat, r.chain, r.key()) > 0 {
					s.deleteRule(r)
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s ports of network %s: %w", fam, id12, err))
		}
	}
	return errors.Join(errs...)
}

// OwnedNetworks returns the networks (12-char id and bridge) that have rules
// of ours, sorted by bridge name.
func (f *Firewall) OwnedNetworks() ([]OwnedNetwork, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[OwnedNetwork]bool{}
	for _, b := range f.backends() {
		st, err := f.exact(b)
		if err != nil {
			return nil, err
		}
		for _, tbl := range []string{tFilter, tNat} {
			t := st.table(tbl)
			for _, cname := range t.order {
				for _, r := range t.chains[cname].rules {
					id, ok := strings.CutPrefix(r.comment, commentPrefix)
					if !ok {
						continue
					}
					for i := 0; i+1 < len(r.tokens); i++ {
						if (r.tokens[i] == "-i" || r.tokens[i] == "-o") && !strings.HasSuffix(r.tokens[i+1], "+") {
							seen[OwnedNetwork{ID: id, Bridge: r.tokens[i+1]}] = true
						}
					}
				}
			}
		}
	}
	out := make([]OwnedNetwork, 0, len(seen))
	for o := range seen {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b OwnedNetwork) int {
		if c := strings.Compare(a.Bridge, b.Bridge); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Owned returns the bridge names that currently have rules of ours.
func (f *Firewall) Owned() ([]string, error) {
	nets, err := f.OwnedNetworks()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range nets {
		if len(out) == 0 || out[len(out)-1] != o.Bridge {
			out = append(out, o.Bridge)
		}
	}
	return out, nil
}

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
