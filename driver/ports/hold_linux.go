//go:build linux

package ports

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// errNoIPv6 means the host has no IPv6 socket support; the [::] half of an
// "all addresses" hold is then skipped.
var errNoIPv6 = errors.New("ipv6 is not available on this host")

// openHolds binds the sockets that hold (proto, ip, port): one socket for an
// explicit ip, 0.0.0.0 and [::] (v6-only) for the zero Addr.
func openHolds(proto string, ip netip.Addr, port uint16) ([]int, error) {
	if ip.IsValid() {
		fd, err := bindHold(proto, ip, port)
		if err != nil {
			return nil, err
		}
		return []int{fd}, nil
	}
	fd4, err := bindHold(proto, netip.IPv4Unspecified(), port)
	if err != nil {
		return nil, err
	}
	fd6, err := bindHold(proto, netip.IPv6Unspecified(), port)
	if errors.Is(err, errNoIPv6) {
		return []int{fd4}, nil
	}
	if err != nil {
		unix.Close(fd4)
		return nil, err
	}
	return []int{fd4, fd6}, nil
}

func closeHolds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// bindHold opens one close-on-exec socket bound to ip:port, listening for
// TCP and SCTP (backlog 1, never accepted), and classifies errors.
func bindHold(proto string, ip netip.Addr, port uint16) (int, error) {
	var family int
	var sa unix.Sockaddr
	switch {
	case ip.Is4():
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	case ip.Is6():
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(port), Addr: ip.As16()}
	default:
		return -1, fmt.Errorf("cannot hold host port %d/%s: no host IP", port, proto)
	}
	var typ, num int
	switch proto {
	case TCP:
		typ, num = unix.SOCK_STREAM, unix.IPPROTO_TCP
	case UDP:
		typ, num = unix.SOCK_DGRAM, unix.IPPROTO_UDP
	case SCTP:
		typ, num = unix.SOCK_STREAM, unix.IPPROTO_SCTP
	default:
		return -1, fmt.Errorf("protocol %q cannot be published", proto)
	}

	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, num)
	if err != nil {
		switch {
		case errors.Is(err, unix.EAFNOSUPPORT) && family == unix.AF_INET6:
			return -1, errNoIPv6
		case proto == SCTP && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT)):
			return -1, ErrSCTPUnavailable
		}
		return -1, fmt.Errorf("cannot hold host port %d/%s on %s: socket: %w", port, proto, displayIP(ip), err)
	}
	// Every return below but the last is a refusal and closes the socket.
	// A flag, not a named result: "return -1, err" would set that to -1
	// before the deferred close reads it.
	held := false
	defer func() {
		if !held {
			unix.Close(fd)
		}
	}()

	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return -1, fmt.Errorf("cannot hold host port %d/%s on %s: IPV6_V6ONLY: %w", port, proto, displayIP(ip), err)
		}
	}
	if proto == UDP {
		// No SO_REUSEADDR for UDP: two UDP sockets that both set it may
		// share a port. Keep the receive buffer minimal: nothing reads it.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
	} else {
		// Like Go's and Docker's listeners: lets us bind over TIME_WAIT
		// leftovers; a listening socket still excludes every other bind.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return -1, fmt.Errorf("cannot hold host port %d/%s on %s: SO_REUSEADDR: %w", port, proto, displayIP(ip), err)
		}
	}

	if err := unix.Bind(fd, sa); err != nil {
		return -1, bindError(proto, ip, port, "bind", err)
	}
	if proto != UDP {
		if err := unix.Listen(fd, 1); err != nil {
			return -1, bindError(proto, ip, port, "listen", err)
		}
	}
	held = true
	return fd, nil
}

// bindError turns a bind/listen errno into the package's messages.
func bindError(proto string, ip netip.Addr, port uint16, op string, err error) error {
	switch {
	case errors.Is(err, unix.EADDRINUSE):
		return &PortInUseError{Proto: proto, HostIP: ip, HostPort: port}
	case errors.Is(err, unix.EADDRNOTAVAIL):
		if ip.IsUnspecified() && ip.Is6() {
			return errNoIPv6
		}
		return fmt.Errorf("host IP %s is not an address of this host: cannot publish host port %d/%s on it (use an address of a host interface, or none for all addresses)",
			displayIP(ip), port, proto)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("cannot bind host port %d/%s on %s: permission denied (ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE)",
			port, proto, displayIP(ip))
	}
	return fmt.Errorf("cannot hold host port %d/%s on %s: %s: %w", port, proto, displayIP(ip), op, err)
}
