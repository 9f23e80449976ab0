package firewall

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

func validID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty network id", ErrInvalid)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("%w: network id %q: only letters and digits allowed", ErrInvalid, id)
		}
	}
	return nil
}

func validOwner(owner string) error {
	for _, c := range owner {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("%w: owner %q: only letters and digits allowed", ErrInvalid, owner)
		}
	}
	return nil
}

func validBridge(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return fmt.Errorf("%w: bridge name %q", ErrInvalid, name)
	}
	if strings.ContainsAny(name, " \t\n/+!\"'\\:") {
		return fmt.Errorf("%w: bridge name %q has a character iptables or the kernel refuses", ErrInvalid, name)
	}
	return nil
}

func validIfacePattern(p string) error {
	if err := validBridge(strings.TrimSuffix(p, "+")); err != nil && p != "+" {
		return fmt.Errorf("foreign bridge pattern %q: %w", p, err)
	}
	return nil
}

// validate checks n and returns its subnets by family (masked, no
// duplicates). needBridge is false for calls that use the id only.
func (n *Network) validate(needBridge bool) (map[family][]netip.Prefix, error) {
	if err := validID(n.ID); err != nil {
		return nil, err
	}
	if needBridge {
		if err := validBridge(n.Bridge); err != nil {
			return nil, err
		}
	}
	byFam := map[family][]netip.Prefix{}
	for _, p := range n.Subnets {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("%w: network %s: subnet %q", ErrInvalid, protocol.Short(n.ID), p)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%w: network %s: IPv4-mapped subnet %s: use the IPv4 form", ErrInvalid, protocol.Short(n.ID), p)
		}
		p = p.Masked()
		fam := familyOf(p.Addr())
		if !containsPrefix(byFam[fam], p) {
			byFam[fam] = append(byFam[fam], p)
		}
	}
	if len(byFam[v4])+len(byFam[v6]) == 0 {
		return nil, fmt.Errorf("%w: network %s has no subnet", ErrInvalid, protocol.Short(n.ID))
	}
	return byFam, nil
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// portsByFamily validates ports and groups them by the container address
// family, without duplicates, one per DNAT rule (state.PortBinding.Translated:
// the IPv6 side of a dual-stack binding is a binding of its own; what the
// holding socket proxies has none).
func (n *Network) portsByFamily(ports []state.PortBinding) (map[family][]state.PortBinding, error) {
	out := map[family][]state.PortBinding{}
	seen := map[state.PortBinding]bool{}
	var rules []state.PortBinding
	for _, p := range ports {
		rules = append(rules, p.Translated()...)
	}
	for _, p := range rules {
		switch p.Proto {
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("%w: port protocol %q (want tcp, udp or sctp)", ErrInvalid, p.Proto)
		}
		if !p.ContainerIP.IsValid() || p.ContainerIP.Zone() != "" || p.ContainerIP.Is4In6() || p.ContainerIP.IsUnspecified() {
			return nil, fmt.Errorf("%w: container address %q", ErrInvalid, p.ContainerIP)
		}
		fam := familyOf(p.ContainerIP)
		// Gateway mode routed publishes the container port alone.
		if (p.HostPort == 0 && n.gatewayMode(fam) != GatewayRouted) || p.ContainerPort == 0 {
			return nil, fmt.Errorf("%w: %s port %d->%d: ports must not be 0", ErrInvalid, p.Proto, p.HostPort, p.ContainerPort)
		}
		if p.HostIP.IsValid() && p.HostIP.IsUnspecified() {
			p.HostIP = netip.Addr{} // every address of the container's family
		}
		if p.HostIP.IsValid() {
			if p.HostIP.Zone() != "" || p.HostIP.Is4In6() {
				return nil, fmt.Errorf("%w: host address %q", ErrInvalid, p.HostIP)
			}
			if familyOf(p.HostIP) != fam {
				return nil, fmt.Errorf("%w: host address %s and container address %s are of different families (no proxy to translate)", ErrInvalid, p.HostIP, p.ContainerIP)
			}
		}
		if len(n.Subnets) > 0 && !inAny(n.Subnets, p.ContainerIP) {
			return nil, fmt.Errorf("%w: container address %s is in no subnet of network %s", ErrInvalid, p.ContainerIP, protocol.Short(n.ID))
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		out[fam] = append(out[fam], p)
	}
	return out, nil
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
