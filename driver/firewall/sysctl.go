package firewall

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/mynet/mynet/protocol"
)

// networkSysctls sets what the rules of n need from the kernel, adding to
// undo how to put back what it changed.
func (f *Firewall) networkSysctls(n *Network, byFam map[family][]netip.Prefix, undo *[]func() error) error {
	if !n.ICC {
		for fam, name := range map[family]string{v4: "bridge-nf-call-iptables", v6: "bridge-nf-call-ip6tables"} {
			if len(byFam[fam]) == 0 {
				continue
			}
			if err := f.ensureBridgeNF(name); err != nil {
				return fmt.Errorf("network %s with enable_icc=false: %w", protocol.Short(n.ID), err)
			}
		}
	}
	for key, value := range bridgeSysctls(n, byFam) {
		prev, changed, err := f.sysctls.Set(key, value)
		if err != nil {
			return fmt.Errorf("network %s: %w", protocol.Short(n.ID), err)
		}
		if changed {
			*undo = append(*undo, func() error { _, _, err := f.sysctls.Set(key, prev); return err })
		}
	}
	return nil
}

// BridgeSysctls returns the settings of n's bridge (key like
// "net/ipv4/conf/br0/route_localnet", and value) that AddNetwork writes. The
// caller puts them back when n goes from a bridge it did not create.
func BridgeSysctls(n Network) map[string]string {
	byFam, err := n.validate(true)
	if err != nil {
		return nil
	}
	return bridgeSysctls(&n, byFam)
}

func bridgeSysctls(n *Network, byFam map[family][]netip.Prefix) map[string]string {
	if n.Internal || len(byFam[v4]) == 0 {
		return nil
	}
	// 127.0.0.1:HOSTPORT is translated to a container address: the kernel
	// routes a 127/8 source out of the bridge only with this (and lets a
	// 127/8 destination in from it: the loopback guard in raw drops those).
	return map[string]string{"net/ipv4/conf/" + n.Bridge + "/route_localnet": "1"}
}

// ensureBridgeNF makes bridged traffic traverse iptables (name is
// bridge-nf-call-iptables or bridge-nf-call-ip6tables), loading br_netfilter
// if its sysctls are missing, like Docker does for enable_icc=false.
func (f *Firewall) ensureBridgeNF(name string) error {
	key := "net/bridge/" + name
	if err := f.sysctls.Stat(key); errors.Is(err, fs.ErrNotExist) {
		if path, lookErr := exec.LookPath("modprobe"); lookErr == nil {
			if out, err := exec.Command(path, "br_netfilter").CombinedOutput(); err != nil {
				f.log.Warn("modprobe br_netfilter failed", "err", err, "output", strings.TrimSpace(string(out)))
			}
		}
	}
	if _, _, err := f.sysctls.Set(key, "1"); err != nil {
		return fmt.Errorf("bridged traffic must pass iptables (is the br_netfilter module loaded?): %w", err)
	}
	return nil
}
