package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/mynet/mynet/driver/link"
)

// Network is one mynet bridge network.
type Network struct {
	ID         string         // Docker network id; the first 12 chars go into rule comments
	Bridge     string         // Linux bridge name (<= 15 bytes, validated by the caller)
	Subnets    []netip.Prefix // the network's IPv4 and/or IPv6 subnets
	ICC        bool           // inter-container traffic allowed (com.docker.network.bridge.enable_icc)
	Masquerade bool           // outbound NAT (enable_ip_masquerade); ignored when Internal
	Internal   bool           // --internal: traffic only within the subnet(s), nothing in or out
	// GatewayModeV4/V6 are Docker 28's bridge gateway modes per family: ""
	// or GatewayNAT (the default), GatewayNATUnprotected, GatewayRouted,
	// GatewayIsolated (only with Internal).
	GatewayModeV4, GatewayModeV6 string
	// TrustedIfs are host interfaces from which a published port is also
	// reachable at the container's own address and port.
	TrustedIfs []string
}

// Gateway modes, as Docker 28's com.docker.network.bridge.gateway_mode_ipv4/_ipv6.
const (
	// GatewayNAT: outbound NAT, published ports by DNAT; nothing reaches a
	// container's address directly (FORWARD's policy decides, DROP under Docker).
	GatewayNAT = "nat"
	// GatewayNATUnprotected: as nat, and anything may reach the containers'
	// addresses directly, on any port (isolation from other bridges stays).
	GatewayNATUnprotected = "nat-unprotected"
	// GatewayRouted: no NAT; a published port opens the container's port on
	// its own address (no host port), and ICMP reaches the containers.
	GatewayRouted = "routed"
	// GatewayIsolated: no gateway on the bridge; Internal networks only.
	GatewayIsolated = "isolated"
)

// gatewayMode is n's gateway mode for family fam ("" means nat).
func (n *Network) gatewayMode(fam family) string {
	m := n.GatewayModeV4
	if fam == v6 {
		m = n.GatewayModeV6
	}
	if m == "" {
		return GatewayNAT
	}
	return m
}

// OwnedNetwork is a network that has rules of mynet's.
type OwnedNetwork struct {
	ID     string // the 12-character id found in the rule comments
	Bridge string
	Owner  string // the instance that made the rules (Config.Owner); "" when they do not say
}

// Config tunes a Firewall; the zero value is the default.
type Config struct {
	// ForeignBridges are iptables interface patterns of bridges that are not
	// ours and must be isolated from ours; nil means DefaultForeignBridges.
	ForeignBridges []string
	// Sysctls is where the kernel settings the rules need are written.
	Sysctls link.Sysctls
	// Owner names this mynet instance (letters and digits) in the rules of
	// its networks, so that instances sharing a network namespace tell
	// their rules apart; "" leaves the rules unnamed.
	Owner string
}

var (
	// ErrIPv6Unavailable: the network or port needs IPv6 rules and
	// ip6tables is missing or does not work.
	ErrIPv6Unavailable = errors.New("IPv6 firewall unavailable")
	// ErrPortConflict: the host port is already published by mynet.
	ErrPortConflict = errors.New("host port already published")
	// ErrNetworkNotProgrammed: AddPorts on a network without chains.
	ErrNetworkNotProgrammed = errors.New("network has no firewall rules")
	// ErrInvalid: a Network or port binding that cannot be programmed.
	ErrInvalid = errors.New("invalid firewall request")
)

// Firewall programs the rules. Its methods are safe for concurrent use.
type Firewall struct {
	mu      sync.Mutex
	log     *slog.Logger
	v4, v6  *backend
	v6err   error
	foreign []string
	sysctls link.Sysctls
	owner   string

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
	f := &Firewall{log: logger, foreign: DefaultForeignBridges, sysctls: cfg.Sysctls, owner: cfg.Owner}
	if err := validOwner(cfg.Owner); err != nil {
		return nil, err
	}
	if cfg.ForeignBridges != nil {
		for _, p := range cfg.ForeignBridges {
			if err := validIfacePattern(p); err != nil {
				return nil, err
			}
		}
		f.foreign = slices.Clone(cfg.ForeignBridges)
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
		if statErr := f.sysctls.Stat("net/ipv6"); statErr != nil {
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
