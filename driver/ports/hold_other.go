//go:build !linux

package ports

import (
	"errors"
	"net/netip"
)

// mynet is a Linux plugin; elsewhere the package builds but cannot hold ports.
func openHolds(proto string, ip netip.Addr, port uint16) ([]int, error) {
	return nil, errors.New("holding host ports is only supported on Linux")
}

func closeHolds(fds []int) {}

type netnsRef struct{}

func callerNetns() *netnsRef { return nil }

func (n *netnsRef) close() {}

func startProxy(proto string, fd int, target netip.AddrPort, ns *netnsRef) (func(), error) {
	return func() {}, nil
}
