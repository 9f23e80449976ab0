package driver

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/mynet/mynet/driver/link"
)

// Option keys, Docker's own where Docker's bridge has one, so that -d bridge
// can be swapped for -d mynet.
const (
	optGeneric     = "com.docker.network.generic"
	optEnableIPv6  = "com.docker.network.enable_ipv6"
	optInternal    = "com.docker.network.internal"
	optBackend     = "backend"
	optBridgeName  = "com.docker.network.bridge.name"
	optICC         = "com.docker.network.bridge.enable_icc"
	optMasquerade  = "com.docker.network.bridge.enable_ip_masquerade"
	optHostBinding = "com.docker.network.bridge.host_binding_ipv4"
	optMTU         = "com.docker.network.driver.mtu"
	optMTUShort    = "mtu"
	optIfPrefix    = "com.docker.network.container_iface_prefix"
	// Docker 28's bridge options.
	optGwModeV4   = "com.docker.network.bridge.gateway_mode_ipv4"
	optGwModeV6   = "com.docker.network.bridge.gateway_mode_ipv6"
	optInhibitV4  = "com.docker.network.bridge.inhibit_ipv4"
	optTrustedIfs = "com.docker.network.bridge.trusted_host_interfaces"

	optParent      = "parent"
	optMacvlanMode = "macvlan_mode"
	optIPvlanMode  = "ipvlan_mode"
	optIPvlanFlag  = "ipvlan_flag"

	optPortMap = "com.docker.network.portmap"
	optMAC     = "com.docker.network.endpoint.macaddress"
	// optIfname is Docker 28's --driver-opt for the container's interface
	// name. Join can only answer a prefix, so it is refused.
	optIfname = "com.docker.network.endpoint.ifname"
)

// Gateway modes (gateway_mode_ipv4 / _ipv6), as Docker 28's bridge: nat is
// the default; nat-unprotected also lets anything reach the containers'
// addresses directly; routed does no NAT (published ports open the
// container's port on its own address); isolated has no gateway on the
// bridge and needs --internal.
const (
	gwNAT         = "nat"
	gwNATUnprot   = "nat-unprotected"
	gwRouted      = "routed"
	gwIsolated    = "isolated"
	gwModesHelped = "nat, nat-unprotected, routed or isolated"
)

var validGwModes = []string{gwNAT, gwNATUnprot, gwRouted, gwIsolated}

// Backends.
const (
	backendBridge  = "bridge"
	backendMacvlan = "macvlan"
	backendIPvlan  = "ipvlan"
)

var validBackends = []string{backendBridge, backendMacvlan, backendIPvlan, backendVXLAN}

// bridgeBackends have a bridge of ours.
const bridgeBackends = backendBridge + "," + backendVXLAN

// backendOptions says which keys apply to which backends ("" = all).
var backendOptions = map[string]string{
	optBridgeName: bridgeBackends, optICC: bridgeBackends, optMasquerade: bridgeBackends, optHostBinding: bridgeBackends,
	optGwModeV4: backendBridge, optGwModeV6: backendBridge, optInhibitV4: backendBridge, optTrustedIfs: backendBridge,
	optParent: backendMacvlan + "," + backendIPvlan, optMacvlanMode: backendMacvlan,
	optIPvlanMode: backendIPvlan, optIPvlanFlag: backendIPvlan,
}

// netConfig is a network's parsed driver options.
type netConfig struct {
	Backend     string
	Bridge      string // "" = derived from the network id
	ICC         bool
	Masquerade  bool
	HostBinding netip.Addr
	MTU         int
	IfPrefix    string
	Parent      string
	Mode, Flag  string // macvlan_mode, or ipvlan_mode and ipvlan_flag
	EnableIPv6  bool
	Internal    bool
	GwModeV4    string // "" = nat
	GwModeV6    string
	InhibitIPv4 bool     // no IPv4 address on the bridge (the gateway is elsewhere)
	TrustedIfs  []string // host interfaces that may reach published ports directly
	Raw         map[string]string
}

// optionHelp lists every key with what it takes, for error messages.
var optionHelp = map[string]string{
	optBackend:     "bridge, macvlan, ipvlan or vxlan",
	optParent:      "an existing host interface, or NAME.VLAN (VLAN 1-4094) to create a VLAN sub-interface",
	optMacvlanMode: "bridge, private, vepa or passthru",
	optIPvlanMode:  "l2, l3 or l3s",
	optIPvlanFlag:  "bridge, private or vepa",
	optBridgeName:  "a Linux interface name of at most 15 bytes",
	optICC:         "true or false",
	optMasquerade:  "true or false",
	optHostBinding: "an IPv4 address",
	optMTU:         "an integer from 68 to 65535",
	optMTUShort:    "an integer from 68 to 65535",
	optIfPrefix:    "letters and digits, at most 12 bytes",
	optGwModeV4:    gwModesHelped,
	optGwModeV6:    gwModesHelped,
	optInhibitV4:   "true or false",
	optTrustedIfs:  "host interface names separated by ':'",
}

func validKeys() string {
	keys := make([]string, 0, len(optionHelp))
	for k := range optionHelp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// parseNetworkOptions reads CreateNetwork's Options.
func parseNetworkOptions(opts map[string]any) (netConfig, error) {
	cfg := netConfig{Backend: backendBridge, ICC: true, Masquerade: true, IfPrefix: "eth", Raw: map[string]string{}}
	var err error
	if cfg.EnableIPv6, err = boolOption(opts, optEnableIPv6); err != nil {
		return cfg, err
	}
	if cfg.Internal, err = boolOption(opts, optInternal); err != nil {
		return cfg, err
	}
	generic, err := genericOptions(opts[optGeneric])
	if err != nil {
		return cfg, err
	}
	keys := make([]string, 0, len(generic))
	for k := range generic {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		v := generic[k]
		cfg.Raw[k] = v
		if err := cfg.set(k, v); err != nil {
			return cfg, err
		}
	}
	for _, k := range keys {
		if applies, ok := backendOptions[k]; ok && !strings.Contains(applies, cfg.Backend) {
			return cfg, fmt.Errorf("option %s applies to the %s backend, not to backend %s", k, strings.ReplaceAll(applies, ",", " and "), cfg.Backend)
		}
	}
	if (cfg.GwModeV4 == gwIsolated || cfg.GwModeV6 == gwIsolated) && !cfg.Internal {
		return cfg, fmt.Errorf("gateway mode %s can only be used for an internal network: add --internal", gwIsolated)
	}
	switch cfg.Backend {
	case backendMacvlan:
		if cfg.Mode == "" {
			cfg.Mode = "bridge"
		}
	case backendIPvlan:
		if cfg.Mode == "" {
			cfg.Mode = "l2"
		}
		if cfg.Flag == "" {
			cfg.Flag = "bridge"
		}
	}
	return cfg, nil
}

func (c *netConfig) set(k, v string) error {
	bad := func(why string) error {
		return fmt.Errorf("option %s=%q: %s; valid: %s", k, v, why, optionHelp[k])
	}
	switch k {
	case optBackend:
		if !contains(validBackends, v) {
			return bad("unknown backend")
		}
		c.Backend = v
	case optBridgeName:
		if err := link.ValidName(v); err != nil {
			return bad(err.Error())
		}
		c.Bridge = v
	case optICC, optMasquerade, optInhibitV4:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("not a boolean")
		}
		switch k {
		case optICC:
			c.ICC = b
		case optMasquerade:
			c.Masquerade = b
		default:
			c.InhibitIPv4 = b
		}
	case optGwModeV4, optGwModeV6:
		if !contains(validGwModes, v) {
			return bad("unknown gateway mode")
		}
		if v == gwNAT {
			v = "" // the default, stored as such
		}
		if k == optGwModeV4 {
			c.GwModeV4 = v
		} else {
			c.GwModeV6 = v
		}
	case optTrustedIfs:
		// Docker splits on ':' and drops empty names.
		c.TrustedIfs = nil
		for _, name := range strings.FieldsFunc(v, func(r rune) bool { return r == ':' }) {
			if err := link.ValidName(name); err != nil {
				return bad(fmt.Sprintf("interface %q: %v", name, err))
			}
			c.TrustedIfs = append(c.TrustedIfs, name)
		}
	case optHostBinding:
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return bad("not an IPv4 address")
		}
		c.HostBinding = a
	case optParent:
		if err := link.ValidName(v); err != nil {
			return bad(err.Error())
		}
		if _, _, _, err := link.SplitVLAN(v); err != nil {
			return bad(err.Error())
		}
		c.Parent = v
	case optMacvlanMode:
		if _, ok := link.MacvlanModes[v]; !ok {
			return bad("unknown mode")
		}
		c.Mode = v
	case optIPvlanMode:
		if _, ok := link.IPvlanModes[v]; !ok {
			return bad("unknown mode")
		}
		c.Mode = v
	case optIPvlanFlag:
		if _, ok := link.IPvlanFlags[v]; !ok {
			return bad("unknown flag")
		}
		c.Flag = v
	case optMTU, optMTUShort:
		n, err := strconv.Atoi(v)
		if err != nil || n < 68 || n > 65535 {
			return bad("out of range")
		}
		c.MTU = n
	case optIfPrefix:
		if v == "" || len(v) > 12 || strings.IndexFunc(v, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) >= 0 {
			return bad("not a valid prefix")
		}
		c.IfPrefix = v
	default:
		return fmt.Errorf("unknown option %q: valid options are %s", k, validKeys())
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func boolOption(opts map[string]any, key string) (bool, error) {
	switch v := opts[key].(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("option %s=%q: want true or false", key, v)
		}
		return b, nil
	default:
		return false, fmt.Errorf("option %s has type %T: want a boolean", key, v)
	}
}

// genericOptions decodes com.docker.network.generic: an object of strings
// (Docker sends numbers and booleans as strings, compose may not).
func genericOptions(v any) (map[string]string, error) {
	out := map[string]string{}
	switch m := v.(type) {
	case nil:
		return out, nil
	case map[string]any:
		for k, x := range m {
			switch t := x.(type) {
			case string:
				out[k] = t
			case bool:
				out[k] = strconv.FormatBool(t)
			case float64:
				out[k] = strconv.FormatFloat(t, 'f', -1, 64)
			default:
				return nil, fmt.Errorf("option %s has type %T: want a string", k, x)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("option %s has type %T: want an object of strings", optGeneric, v)
	}
}
