// Package ports turns Docker's com.docker.network.portmap endpoint option
// into concrete host-port bindings and holds every reserved host port with a
// real socket, so that nothing else on the host (a container on Docker's own
// bridge, another mynet endpoint, any process) can take it. Docker detects
// port conflicts by binding, and so does this package.
//
// Decisions:
//
//   - A Mapping whose HostIP is unset ("" in the option, the zero netip.Addr)
//     means "all addresses". It is held on 0.0.0.0 AND on [::] (IPV6_V6ONLY),
//     whatever the container's address family, like Docker's bridge, which
//     also creates the [::] binding for an unspecified host IP. So an IPv6
//     listener on the same port conflicts, both ways. The [::] hold is skipped
//     only when the host has no IPv6 at all (socket family not supported).
//     An explicit "0.0.0.0" holds IPv4 only, an explicit "::" IPv6 only.
//   - TCP and SCTP ports are held by a listening socket (SO_REUSEADDR, as Go
//     and Docker set it, backlog 1) that never accepts; UDP ports by a bound
//     socket without SO_REUSEADDR (with it, Linux would let a second
//     SO_REUSEADDR socket share the port) and with a minimal receive buffer.
//     IPv4 traffic that the driver's DNAT rules do not redirect (e.g. to
//     127.0.0.1 without route_localnet) reaches the holding socket and goes
//     nowhere, exactly as with Docker's dummy proxy (userland-proxy=false).
//     The IPv6 socket of a tcp or udp port is a proxy instead (see
//     proxy_linux.go): what reaches it (::1 always, every IPv6 address of an
//     IPv4-only container) is forwarded to the binding's Target6.
//   - All sockets are close-on-exec.
//   - Within one Reserver the same (proto, host IP, host port) cannot be
//     taken twice, and an unspecified address conflicts with every address of
//     its family (0.0.0.0:P with 127.0.0.1:P), even where the kernel alone
//     would allow it.
package ports

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
)

// Protocol names used in Mapping.Proto and state.PortBinding.Proto.
const (
	TCP  = "tcp"
	UDP  = "udp"
	SCTP = "sctp"
)

// Mapping is one request from com.docker.network.portmap (one element), decoded.
type Mapping struct {
	Proto         string     // "tcp", "udp", "sctp"
	HostIP        netip.Addr // zero = all addresses
	HostPort      uint16     // 0 = pick one
	HostPortEnd   uint16     // range end (== HostPort for one port; 0 treated as HostPort)
	ContainerPort uint16
}

// String renders the mapping like docker ps: "0.0.0.0:8080-8090->80/tcp".
func (m Mapping) String() string {
	hp := "0"
	if m.HostPort != 0 {
		hp = strconv.Itoa(int(m.HostPort))
		if m.HostPortEnd > m.HostPort {
			hp += "-" + strconv.Itoa(int(m.HostPortEnd))
		}
	}
	return fmt.Sprintf("%s:%s->%d/%s", addrPortHost(m.HostIP), hp, m.ContainerPort, m.Proto)
}

// addrPortHost renders an address for use before ":port".
func addrPortHost(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return displayIP(a)
}

// displayIP renders a host IP for messages: the zero Addr (all addresses)
// shows as 0.0.0.0, IPv6 addresses in brackets.
func displayIP(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "0.0.0.0"
	case a.Is6():
		return "[" + a.String() + "]"
	default:
		return a.String()
	}
}

// protoNames names IP protocol numbers that users may plausibly send, for
// error messages.
var protoNames = map[int64]string{
	0: "hopopt", 1: "icmp", 2: "igmp", 4: "ipip", 6: TCP, 17: UDP, 41: "ipv6",
	47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 103: "pim", 132: SCTP,
	136: "udplite",
}

const publishable = "use tcp (6), udp (17) or sctp (132)"

// ParsePortMap decodes the value of the com.docker.network.portmap option.
// v is the JSON-decoded value: a []any of map[string]any with the keys Proto
// (IP protocol number: 6 tcp, 17 udp, 132 sctp), IP, Port, HostIP, HostPort
// and HostPortEnd. The option may also be given as a JSON string, []byte or
// json.RawMessage. nil, "" and [] mean no mappings. Keys are matched
// case-insensitively (exact spelling first); unknown keys are ignored; a null
// value is treated as absent. Proto and Port are required; Proto may also be
// given as a name ("tcp"). Entries are numbered from 1 in errors.
func ParsePortMap(v any) ([]Mapping, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return parsePortMapJSON([]byte(x))
	case json.RawMessage:
		return parsePortMapJSON(x)
	case []byte:
		return parsePortMapJSON(x)
	case []any:
		return parseEntries(len(x), func(i int) any { return x[i] })
	case []map[string]any:
		return parseEntries(len(x), func(i int) any { return x[i] })
	case map[string]any:
		return nil, errors.New("portmap: expected a list of port bindings, got a single object")
	default:
		return nil, fmt.Errorf("portmap: expected a list of port bindings, got %s", describe(v))
	}
}

func parsePortMapJSON(b []byte) ([]Mapping, error) {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("portmap: not valid JSON: %v", err)
	}
	switch v.(type) {
	case string, []byte, json.RawMessage:
		// Refuse doubly encoded JSON rather than recursing.
		return nil, fmt.Errorf("portmap: expected a list of port bindings, got %s", describe(v))
	}
	return ParsePortMap(v)
}

func parseEntries(n int, at func(int) any) ([]Mapping, error) {
	if n == 0 {
		return nil, nil
	}
	out := make([]Mapping, 0, n)
	for i := 0; i < n; i++ {
		m, err := parseEntry(at(i))
		if err != nil {
			return nil, fmt.Errorf("portmap entry %d: %w", i+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// field looks a key up, exact spelling first, then case-insensitively.
// A null value counts as absent.
func field(obj map[string]any, key string) (any, bool) {
	if v, ok := obj[key]; ok {
		return v, v != nil
	}
	for k, v := range obj {
		if strings.EqualFold(k, key) {
			return v, v != nil
		}
	}
	return nil, false
}

func parseEntry(e any) (Mapping, error) {
	obj, ok := e.(map[string]any)
	if !ok {
		return Mapping{}, fmt.Errorf("expected an object with Proto, Port, HostIP, HostPort, HostPortEnd, got %s", describe(e))
	}
	var m Mapping

	pv, ok := field(obj, "Proto")
	if !ok {
		return Mapping{}, errors.New("Proto is missing: use tcp (6), udp (17) or sctp (132)")
	}
	proto, err := parseProto(pv)
	if err != nil {
		return Mapping{}, err
	}
	m.Proto = proto

	cv, ok := field(obj, "Port")
	if !ok {
		return Mapping{}, errors.New("Port (the container port) is missing")
	}
	cp, err := parsePort("Port", cv)
	if err != nil {
		return Mapping{}, err
	}
	if cp == 0 {
		return Mapping{}, errors.New("Port 0: the container port must be 1-65535")
	}
	m.ContainerPort = cp

	if iv, ok := field(obj, "IP"); ok {
		// The container IP is empty in Docker's requests; validate but do not use it.
		if _, err := parseIP("IP", iv); err != nil {
			return Mapping{}, err
		}
	}
	if hv, ok := field(obj, "HostIP"); ok {
		if m.HostIP, err = parseIP("HostIP", hv); err != nil {
			return Mapping{}, err
		}
	}
	if hv, ok := field(obj, "HostPort"); ok {
		if m.HostPort, err = parsePort("HostPort", hv); err != nil {
			return Mapping{}, err
		}
	}
	if ev, ok := field(obj, "HostPortEnd"); ok {
		if m.HostPortEnd, err = parsePort("HostPortEnd", ev); err != nil {
			return Mapping{}, err
		}
	}
	if err := m.normalize(); err != nil {
		return Mapping{}, err
	}
	return m, nil
}

// normalize checks a mapping and fills HostPortEnd; shared by ParsePortMap
// and Reserve (callers may build Mappings themselves).
func (m *Mapping) normalize() error {
	switch m.Proto {
	case TCP, UDP, SCTP:
	default:
		p := strings.ToLower(m.Proto)
		if p != TCP && p != UDP && p != SCTP {
			return fmt.Errorf("protocol %s cannot be published: use tcp, udp or sctp", quote(m.Proto))
		}
		m.Proto = p
	}
	if m.ContainerPort == 0 {
		return errors.New("container port 0: the container port must be 1-65535")
	}
	if m.HostIP.IsValid() {
		if m.HostIP.Zone() != "" {
			return fmt.Errorf("HostIP %s: an address with a zone cannot be used as a host IP", m.HostIP)
		}
		m.HostIP = m.HostIP.Unmap()
	}
	if m.HostPortEnd == 0 {
		m.HostPortEnd = m.HostPort
	}
	if m.HostPort == 0 && m.HostPortEnd != 0 {
		return fmt.Errorf("HostPortEnd %d without HostPort: give the start of the range in HostPort, or neither to pick a port", m.HostPortEnd)
	}
	if m.HostPortEnd < m.HostPort {
		return fmt.Errorf("HostPortEnd %d is below HostPort %d: the host port range is empty", m.HostPortEnd, m.HostPort)
	}
	return nil
}

func parseProto(v any) (string, error) {
	if s, ok := v.(string); ok {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case TCP, "6":
			return TCP, nil
		case UDP, "17":
			return UDP, nil
		case SCTP, "132":
			return SCTP, nil
		}
		return "", fmt.Errorf("Proto %s cannot be published: %s", quote(s), publishable)
	}
	n, err := integer("Proto", v)
	if err != nil {
		return "", err
	}
	switch n {
	case 6:
		return TCP, nil
	case 17:
		return UDP, nil
	case 132:
		return SCTP, nil
	}
	if name, ok := protoNames[n]; ok {
		return "", fmt.Errorf("Proto %d (%s) cannot be published: %s", n, name, publishable)
	}
	return "", fmt.Errorf("Proto %d cannot be published: %s", n, publishable)
}

func parsePort(name string, v any) (uint16, error) {
	if s, ok := v.(string); ok {
		return 0, fmt.Errorf("%s %s is a string: expected a number 0-65535", name, quote(s))
	}
	n, err := integer(name, v)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 65535 {
		return 0, fmt.Errorf("%s %d is out of range: ports are 0-65535", name, n)
	}
	return uint16(n), nil
}

func parseIP(name string, v any) (netip.Addr, error) {
	s, ok := v.(string)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%s must be a string with an IP address (or \"\" for all addresses), got %s", name, describe(v))
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, nil
	}
	// "[::1]" as Docker's CLI spells it; a lone bracket is no address.
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %s is not an IP address", name, quote(v.(string)))
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s %s: an address with a zone cannot be used", name, quote(s))
	}
	return a.Unmap(), nil
}

// integer converts a JSON number (float64, json.Number, or a Go integer type
// from a caller that built the value itself) to an int64, rejecting
// fractions and other types.
func integer(name string, v any) (int64, error) {
	switch x := v.(type) {
	case float64:
		return floatInt(name, x)
	case float32:
		return floatInt(name, float64(x))
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		f, err := x.Float64()
		if err != nil {
			return 0, fmt.Errorf("%s %s is not a number", name, quote(string(x)))
		}
		return floatInt(name, f)
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return clampU(rv.Uint()), nil
	}
	return 0, fmt.Errorf("%s must be a number, got %s", name, describe(v))
}

func clampU(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

func floatInt(name string, f float64) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, fmt.Errorf("%s %s is not a whole number", name, strconv.FormatFloat(f, 'g', -1, 64))
	}
	if f > 1<<53 || f < -(1<<53) {
		return 0, fmt.Errorf("%s %s is out of range", name, strconv.FormatFloat(f, 'g', -1, 64))
	}
	return int64(f), nil
}

// describe names a decoded JSON value's type for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean (" + strconv.FormatBool(x) + ")"
	case float64:
		return "a number (" + strconv.FormatFloat(x, 'g', -1, 64) + ")"
	case json.Number:
		return "a number (" + quote(string(x)) + ")"
	case string:
		return "a string (" + quote(x) + ")"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// quote quotes a user-supplied string for a message, cut to a sane length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
