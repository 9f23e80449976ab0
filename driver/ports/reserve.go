package ports

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mynet/mynet/state"
)

// ErrPortInUse is matched (errors.Is) by every *PortInUseError.
var ErrPortInUse = errors.New("host port is already in use")

// ErrNoFreePort is wrapped by the errors for an exhausted host port range or
// ephemeral range.
var ErrNoFreePort = errors.New("no free host port")

// ErrSCTPUnavailable is returned when the kernel has no SCTP support.
var ErrSCTPUnavailable = errors.New("sctp is not available on this host: load the sctp kernel module (modprobe sctp)")

// PortInUseError reports a host port taken by someone else: another mapping
// of this Reserver, another container (Docker's proxy holds its ports the
// same way) or a host process.
type PortInUseError struct {
	Proto    string
	HostIP   netip.Addr // the address that conflicted; zero = all addresses (shown as 0.0.0.0)
	HostPort uint16
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("host port %d/%s on %s is already in use (by another container or a host process): choose another host port or stop the other one",
		e.HostPort, e.Proto, displayIP(e.HostIP))
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// Default ephemeral range when /proc/sys/net/ipv4/ip_local_port_range cannot
// be read (Docker's fallback).
const (
	DefaultEphemeralFirst = 49153
	DefaultEphemeralLast  = 65535
)

const ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

type protoPort struct {
	proto string
	port  uint16
}

type hold struct {
	b     state.PortBinding
	fds   []int     // holding sockets (one, or two for "all addresses")
	stop  func()    // ends the IPv6 socket's proxy (nil: none)
	netns *netnsRef // where the hold was made, if not the process's namespace
}

// Reserver reserves host ports and holds them with sockets. It is safe for
// concurrent use. The zero value is not usable: call NewReserver.
type Reserver struct {
	mu          sync.Mutex
	first, last uint16                             // ephemeral range
	next        map[string]uint16                  // round-robin cursor per protocol
	held        map[protoPort]map[netip.Addr]*hold // by (proto, port), then host IP
}

// NewReserver returns a Reserver whose ephemeral range (for HostPort 0) is
// read from /proc/sys/net/ipv4/ip_local_port_range, falling back to
// 49153-65535.
func NewReserver() *Reserver {
	first, last := DefaultEphemeralFirst, DefaultEphemeralLast
	if b, err := os.ReadFile(ephemeralRangeFile); err == nil {
		if f, l, ok := parseEphemeralRange(string(b)); ok {
			first, last = int(f), int(l)
		}
	}
	return newReserver(uint16(first), uint16(last))
}

func newReserver(first, last uint16) *Reserver {
	return &Reserver{
		first: first,
		last:  last,
		next:  map[string]uint16{},
		held:  map[protoPort]map[netip.Addr]*hold{},
	}
}

// parseEphemeralRange parses "32768\t60999\n".
func parseEphemeralRange(s string) (first, last uint16, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(f[0], 10, 16)
	b, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || a == 0 || a > b {
		return 0, 0, false
	}
	return uint16(a), uint16(b), true
}

// EphemeralRange returns the range HostPort 0 picks from.
func (r *Reserver) EphemeralRange() (first, last uint16) { return r.first, r.last }

// Reserve takes a host port for every mapping, for the container address
// containerIP, and holds each with a socket until Release. It is
// all-or-nothing: if one mapping fails, whatever this call took is released
// and no binding is returned.
//
//   - HostPort 0: a free port of the ephemeral range, searched round-robin
//     from just after the last port picked for the same protocol (as Docker
//     does), trying at most the whole range; an error other than "in use"
//     (permission, address not on this host, no SCTP) stops the search.
//   - HostPort..HostPortEnd: the first free port of the range.
//   - HostPort alone: that port, or a *PortInUseError.
func (r *Reserver) Reserve(containerIP netip.Addr, ms []Mapping) ([]state.PortBinding, error) {
	return r.reserve(containerIP, netip.Addr{}, ms)
}

// ReserveDualStack is Reserve for a dual-stack container: a mapping on
// every address (HostIP zero) gets ContainerIPv6 = containerIPv6, where its
// IPv6 side goes (the rest of the mappings go to containerIP, as Reserve).
func (r *Reserver) ReserveDualStack(containerIP, containerIPv6 netip.Addr, ms []Mapping) ([]state.PortBinding, error) {
	if !containerIPv6.Unmap().Is6() {
		return nil, fmt.Errorf("container IPv6 address %s is not an IPv6 address", containerIPv6)
	}
	return r.reserve(containerIP, containerIPv6.Unmap(), ms)
}

func (r *Reserver) reserve(containerIP, containerIPv6 netip.Addr, ms []Mapping) ([]state.PortBinding, error) {
	containerIP = containerIP.Unmap()
	norm := make([]Mapping, len(ms))
	for i, m := range ms {
		if err := m.normalize(); err != nil {
			return nil, fmt.Errorf("port mapping %d (%s): %w", i+1, m, err)
		}
		norm[i] = m
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	taken := make([]*hold, 0, len(norm))
	for _, m := range norm {
		h, err := r.take(containerIP, containerIPv6, m)
		if err != nil {
			for _, t := range taken {
				r.drop(t)
			}
			return nil, err
		}
		taken = append(taken, h)
	}
	out := make([]state.PortBinding, len(taken))
	for i, t := range taken {
		out[i] = t.b
	}
	return out, nil
}

// take reserves one normalized mapping; r.mu is held.
func (r *Reserver) take(containerIP, containerIPv6 netip.Addr, m Mapping) (*hold, error) {
	b := state.PortBinding{Proto: m.Proto, HostIP: m.HostIP, ContainerIP: containerIP, ContainerPort: m.ContainerPort}
	if !m.HostIP.IsValid() {
		b.ContainerIPv6 = containerIPv6
	}
	if m.HostPort == 0 {
		return r.takeEphemeral(b)
	}
	if m.HostPortEnd == m.HostPort {
		b.HostPort = m.HostPort
		return r.hold(b)
	}
	for p := int(m.HostPort); p <= int(m.HostPortEnd); p++ {
		b.HostPort = uint16(p)
		h, err := r.hold(b)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, ErrPortInUse) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w in %d-%d/%s on %s for container port %d: all are in use (by other containers or host processes): choose another range or stop one of them",
		ErrNoFreePort, m.HostPort, m.HostPortEnd, m.Proto, displayIP(m.HostIP), m.ContainerPort)
}

func (r *Reserver) takeEphemeral(b state.PortBinding) (*hold, error) {
	first, last := int(r.first), int(r.last)
	size := last - first + 1
	start := int(r.next[b.Proto])
	if start < first || start > last {
		start = first
	}
	for i := 0; i < size; i++ {
		p := first + (start-first+i)%size
		b.HostPort = uint16(p)
		h, err := r.hold(b)
		if err == nil {
			if p == last {
				r.next[b.Proto] = uint16(first)
			} else {
				r.next[b.Proto] = uint16(p + 1)
			}
			return h, nil
		}
		if !errors.Is(err, ErrPortInUse) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w for container port %d/%s on %s in the ephemeral range %d-%d: all are in use (by other containers or host processes): give an explicit host port",
		ErrNoFreePort, b.ContainerPort, b.Proto, displayIP(b.HostIP), first, last)
}

// overlaps reports whether two host IPs of the same (proto, port) conflict:
// the zero Addr covers everything, an unspecified address its family.
func overlaps(a, b netip.Addr) bool {
	if !a.IsValid() || !b.IsValid() {
		return true
	}
	if a.Is4() != b.Is4() {
		return false
	}
	return a == b || a.IsUnspecified() || b.IsUnspecified()
}

// hold checks b against this Reserver's holds, then binds the sockets and
// records the hold; r.mu is held.
func (r *Reserver) hold(b state.PortBinding) (*hold, error) {
	pp := protoPort{b.Proto, b.HostPort}
	for a := range r.held[pp] {
		if overlaps(a, b.HostIP) {
			ip := b.HostIP
			if !ip.IsValid() && a.Is6() {
				ip = netip.IPv6Unspecified()
			}
			return nil, &PortInUseError{Proto: b.Proto, HostIP: ip, HostPort: b.HostPort}
		}
	}
	fds, err := openHolds(b.Proto, b.HostIP, b.HostPort)
	if err != nil {
		return nil, err
	}
	h := &hold{b: b, fds: fds}
	if err := h.proxy(); err != nil {
		closeHolds(fds)
		return nil, err
	}
	if r.held[pp] == nil {
		r.held[pp] = map[netip.Addr]*hold{}
	}
	r.held[pp][b.HostIP] = h
	return h, nil
}

// drop closes a hold's sockets and forgets it; r.mu is held.
func (r *Reserver) drop(h *hold) {
	pp := protoPort{h.b.Proto, h.b.HostPort}
	if m := r.held[pp]; m != nil && m[h.b.HostIP] == h {
		delete(m, h.b.HostIP)
		if len(m) == 0 {
			delete(r.held, pp)
		}
	}
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
	h.netns.close()
	closeHolds(h.fds)
	h.fds = nil
}

// proxy starts the proxy of the hold's IPv6 socket, if it has one and a
// target (see proxy_linux.go).
func (h *hold) proxy() error {
	fd6 := -1
	switch {
	case !h.b.HostIP.IsValid() && len(h.fds) == 2:
		fd6 = h.fds[1]
	case h.b.HostIP.Is6() && len(h.fds) == 1:
		fd6 = h.fds[0]
	}
	target := h.b.Target6()
	if fd6 < 0 || !target.Addr().IsValid() || target.Port() == 0 || (h.b.Proto != TCP && h.b.Proto != UDP) {
		return nil
	}
	h.netns = callerNetns()
	stop, err := startProxy(h.b.Proto, fd6, target, h.netns)
	if err != nil {
		h.netns.close()
		h.netns = nil
		return fmt.Errorf("cannot proxy host port %d/%s on [::] to %s: %w", h.b.HostPort, h.b.Proto, target, err)
	}
	h.stop = stop
	return nil
}

// Restore re-takes one specific binding, e.g. from the state store after a
// plugin restart. Conflicts give the same *PortInUseError as Reserve.
// Restoring a binding this Reserver already holds identically is a no-op.
func (r *Reserver) Restore(b state.PortBinding) error {
	m := Mapping{Proto: b.Proto, HostIP: b.HostIP, HostPort: b.HostPort, ContainerPort: b.ContainerPort}
	if b.HostPort == 0 {
		return fmt.Errorf("cannot restore %s: host port 0 is not a reserved port", b)
	}
	if err := m.normalize(); err != nil {
		return fmt.Errorf("cannot restore %s: %w", b, err)
	}
	b.Proto, b.HostIP, b.ContainerIP, b.ContainerIPv6 = m.Proto, m.HostIP, b.ContainerIP.Unmap(), b.ContainerIPv6.Unmap()

	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.held[protoPort{b.Proto, b.HostPort}][b.HostIP]; h != nil && h.b == b {
		return nil
	}
	_, err := r.hold(b)
	return err
}

// Release closes the holding sockets of the given bindings. Bindings not
// held (already released, never reserved, or now held for another
// container) are ignored, so Release is idempotent.
func (r *Reserver) Release(bs []state.PortBinding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range bs {
		b.HostIP, b.ContainerIP, b.ContainerIPv6 = b.HostIP.Unmap(), b.ContainerIP.Unmap(), b.ContainerIPv6.Unmap()
		if p := strings.ToLower(b.Proto); p == TCP || p == UDP || p == SCTP {
			b.Proto = p
		}
		if h := r.held[protoPort{b.Proto, b.HostPort}][b.HostIP]; h != nil && h.b == b {
			r.drop(h)
		}
	}
}

// Held returns the bindings currently held, sorted by protocol, host port
// and host IP.
func (r *Reserver) Held() []state.PortBinding {
	r.mu.Lock()
	out := make([]state.PortBinding, 0, len(r.held))
	for _, m := range r.held {
		for _, h := range m {
			out = append(out, h.b)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b state.PortBinding) int {
		if c := strings.Compare(a.Proto, b.Proto); c != 0 {
			return c
		}
		if a.HostPort != b.HostPort {
			return int(a.HostPort) - int(b.HostPort)
		}
		return a.HostIP.Compare(b.HostIP)
	})
	return out
}
