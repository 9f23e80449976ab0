package driver

import (
	"strconv"
	"strings"

	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// sameNetwork decides a CreateNetwork repeated for an id we already have.
// Docker and our own retries repeat a create, so the same effective network
// succeeds; a request that would give a different network is refused rather
// than silently ignored. What is compared is what the driver derived and
// stored, never the raw option maps (which may differ harmlessly: "1" and
// "true", a default given explicitly).
func sameNetwork(have, want state.Network) error {
	for _, f := range networkFields(have) {
		if h, w := f.value(have), f.value(want); h != w {
			return protocol.BadRequest("network %s already exists with %s=%s; this request asks for %s", protocol.Short(have.ID), f.name, shown(h), shown(w))
		}
	}
	return nil
}

type networkField struct {
	name  string
	value func(state.Network) string
}

// networkFields lists, in the order they are reported, the record's fields
// a request decides. The backend comes first: when it differs, every other
// difference follows from it.
func networkFields(have state.Network) []networkField {
	modeKey := optMacvlanMode
	if have.Backend == backendIPvlan {
		modeKey = optIPvlanMode
	}
	return []networkField{
		{optBackend, func(n state.Network) string { return n.Backend }},
		{"IPv4 pool", func(n state.Network) string { return pools(n.IPv4) }},
		{"IPv4 gateway", func(n state.Network) string { return gatewaysOf(n.IPv4) }},
		{"IPv6 pool", func(n state.Network) string { return pools(n.IPv6) }},
		{"IPv6 gateway", func(n state.Network) string { return gatewaysOf(n.IPv6) }},
		{optEnableIPv6, func(n state.Network) string { return strconv.FormatBool(n.EnableIPv6) }},
		{optInternal, func(n state.Network) string { return strconv.FormatBool(n.Internal) }},
		{optBridgeName, func(n state.Network) string { return n.Bridge }},
		{optICC, func(n state.Network) string { return strconv.FormatBool(n.ICC) }},
		{optMasquerade, func(n state.Network) string { return strconv.FormatBool(n.Masquerade) }},
		{optHostBinding, func(n state.Network) string { return n.HostBindingV4 }},
		{optMTU, func(n state.Network) string { return mtuOf(n.MTU) }},
		{optIfPrefix, func(n state.Network) string { return n.IfacePrefix }},
		{optGwModeV4, func(n state.Network) string { return n.GatewayModeV4 }},
		{optGwModeV6, func(n state.Network) string { return n.GatewayModeV6 }},
		{optInhibitV4, func(n state.Network) string { return strconv.FormatBool(n.InhibitIPv4) }},
		{optTrustedIfs, func(n state.Network) string { return strings.Join(n.TrustedIfs, ":") }},
		// A dummy parent is named after the id, so only whether one was
		// asked for tells "no parent" from "parent=mnd<id>".
		{optParent, func(n state.Network) string {
			if bridged(n) || dummyParent(n) {
				return ""
			}
			return n.Parent
		}},
		{modeKey, func(n state.Network) string { return n.Mode }},
		{optIPvlanFlag, func(n state.Network) string { return n.Flag }},
	}
}

func pools(subnets []state.Subnet) string {
	var out []string
	for _, s := range subnets {
		out = append(out, s.Pool.String())
	}
	return strings.Join(out, ",")
}

func gatewaysOf(subnets []state.Subnet) string {
	var out []string
	for _, s := range subnets {
		if s.Gateway.IsValid() {
			out = append(out, s.Gateway.String())
		}
	}
	return strings.Join(out, ",")
}

func mtuOf(mtu int) string {
	if mtu == 0 {
		return ""
	}
	return strconv.Itoa(mtu)
}

// shown names an unset value in an error.
func shown(v string) string {
	if v == "" {
		return "(unset)"
	}
	return v
}
