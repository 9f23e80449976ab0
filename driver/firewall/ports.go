package firewall

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// AddPorts publishes ports of a container of network n: all or nothing.
// Adding a port that is already published the same way is a no-op; a host
// port (protocol, address, port) published by mynet to another target is
// refused with ErrPortConflict. Host ports of Docker's own networks are not
// seen here: hold the host port bound (as Docker does) to detect those.
// Each binding is the rules of state.PortBinding.Translated: a HostIP zero
// or unspecified means every host address of ContainerIP's family (and, with
// ContainerIPv6, of IPv6 too); what the holding socket proxies has no rule.
func (f *Firewall) AddPorts(n Network, ports []state.PortBinding) (retErr error) {
	if _, err := n.validate(true); err != nil {
		return err
	}
	if n.Internal {
		return fmt.Errorf("%w: network %s is internal: no published ports", ErrInvalid, protocol.Short(n.ID))
	}
	byFam, err := n.portsByFamily(ports)
	if err != nil {
		return err
	}
	id12 := protocol.Short(n.ID)
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
		err := f.changeWithBase(b, func(st *ruleset, s *script) error {
			if !programmed(st, id12) {
				return fmt.Errorf("%w: network %s (%s): call AddNetwork first", ErrNetworkNotProgrammed, id12, fam)
			}
			f.baseOps(b, st, s, true)
			ch.added, hasSCTP = nil, false
			routed := n.gatewayMode(fam) == GatewayRouted
			for i, p := range pms {
				var rs []rule
				if !routed { // routed: no DNAT, no host port
					r := portRule(id12, p)
					if err := checkConflict(st, r, dnatOnly(pms[:i])); err != nil {
						return err
					}
					rs = append(rs, r)
				}
				for _, r := range append(rs, openRules(&n, fam, p)...) {
					if st.count(r.table, r.chain, r.key()) == 0 {
						s.appendRule(r)
						ch.added = append(ch.added, r)
						hasSCTP = hasSCTP || p.Proto == "sctp"
					}
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

// dnatOnly drops the bindings without a host port (gateway mode routed).
func dnatOnly(ps []state.PortBinding) []state.PortBinding {
	var out []state.PortBinding
	for _, p := range ps {
		if p.HostPort != 0 {
			out = append(out, p)
		}
	}
	return out
}

// checkConflict looks for another DNAT rule of ours (or an earlier port of
// the same request) that takes the same protocol and host port on an
// overlapping host address.
func checkConflict(st *ruleset, r rule, earlier []state.PortBinding) error {
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
		// The cached rules keep no words: split only the few that can
		// overlap, not every published port at every call.
		if !strings.Contains(e.text, "--dport "+pp.port) {
			continue
		}
		o, ok := parsePortRule(e.words())
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
func (f *Firewall) RemovePorts(n Network, ports []state.PortBinding) error {
	if err := validID(n.ID); err != nil {
		return err
	}
	byFam, err := n.portsByFamily(ports)
	if err != nil {
		return err
	}
	id12 := protocol.Short(n.ID)
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
				for _, r := range append([]rule{portRule(id12, p)}, openRules(&n, fam, p)...) {
					if st.count(r.table, r.chain, r.key()) > 0 {
						s.deleteRule(r)
					}
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
