package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mynet/mynet/timing"
)

// VXLAN is a VXLAN device on a bridge that forwards only to the entries
// mynet programs: learning off (no MAC->VTEP learned from traffic), proxy on
// (ARP answered from its neighbour table, so ARP never crosses hosts), no
// miss notifications and no flood entries.
type VXLAN struct {
	Name   string
	Bridge string
	VNI    uint32
	Local  netip.Addr // this host's underlay address
	Port   int        // UDP destination port
	MTU    int
}

// ErrVNITaken: another device already uses the VNI on the port (a leftover
// of an unclean stop, or a tunnel not ours). Other names it.
type ErrVNITaken struct {
	VNI   uint32
	Port  int
	Other string
}

func (e *ErrVNITaken) Error() string {
	return fmt.Sprintf("VXLAN device %s already uses VNI %d on UDP port %d", e.Other, e.VNI, e.Port)
}

// EnsureVXLAN makes sure the device exists as described, on its bridge and
// up. An existing device of that name with other settings is replaced.
// created says whether this call made it.
func EnsureVXLAN(v VXLAN) (created bool, err error) {
	defer timing.Since(timing.Netlink, time.Now())
	br, err := findBridge(v.Bridge)
	if err != nil {
		return false, err
	}
	l, err := netlink.LinkByName(v.Name)
	switch {
	case err == nil:
		if x, ok := l.(*netlink.Vxlan); ok && x.VxlanId == int(v.VNI) && x.Port == v.Port && x.SrcAddr.Equal(v.Local.AsSlice()) && !x.Learning && x.Proxy {
			break
		}
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			return false, fmt.Errorf("replace %s: %w", v.Name, err)
		}
		l = nil
	case !isNotFound(err):
		return false, fmt.Errorf("look up %s: %w", v.Name, err)
	default:
		l = nil
	}
	if l == nil {
		if other := vniUser(v.VNI, v.Port); other != "" {
			return false, &ErrVNITaken{VNI: v.VNI, Port: v.Port, Other: other}
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = v.Name
		attrs.MTU = v.MTU
		dev := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(v.VNI), SrcAddr: v.Local.AsSlice(), Port: v.Port, Learning: false, Proxy: true}
		if err := netlink.LinkAdd(dev); err != nil {
			if errors.Is(err, unix.EEXIST) {
				if other := vniUser(v.VNI, v.Port); other != "" {
					return false, &ErrVNITaken{VNI: v.VNI, Port: v.Port, Other: other}
				}
			}
			return false, fmt.Errorf("create VXLAN device %s (VNI %d, local %s, port %d): %w", v.Name, v.VNI, v.Local, v.Port, err)
		}
		created = true
		if l, err = netlink.LinkByName(v.Name); err != nil {
			return true, err
		}
	}
	if v.MTU > 0 && l.Attrs().MTU != v.MTU {
		if err := netlink.LinkSetMTU(l, v.MTU); err != nil {
			return created, fmt.Errorf("set MTU %d on %s: %w", v.MTU, v.Name, err)
		}
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return created, fmt.Errorf("attach %s to %s: %w", v.Name, v.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return created, fmt.Errorf("set %s up: %w", v.Name, err)
	}
	return created, nil
}

// vniUser names the VXLAN device that uses vni on port, if any.
func vniUser(vni uint32, port int) string {
	links, err := netlink.LinkList()
	if err != nil {
		return ""
	}
	for _, l := range links {
		if x, ok := l.(*netlink.Vxlan); ok && x.VxlanId == int(vni) && x.Port == port {
			return x.Name
		}
	}
	return ""
}

// Remote is one endpoint on another host, as a VXLAN device needs it.
type Remote struct {
	IP   netip.Addr
	MAC  string
	VTEP netip.Addr
}

// Remotes reads the entries programmed on a VXLAN device: permanent
// neighbours (IP -> MAC) joined with the device's own forwarding entries
// (MAC -> VTEP). Entries that do not pair up are returned with the missing
// half zero, so a diff removes them.
func Remotes(name string) (map[netip.Addr]Remote, map[string]netip.Addr, error) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, nil, err
	}
	neighs, err := netlink.NeighList(l.Attrs().Index, unix.AF_UNSPEC) // ARP and neighbour discovery in one dump
	if err != nil {
		return nil, nil, fmt.Errorf("list neighbours of %s: %w", name, err)
	}
	fdb, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, nil, fmt.Errorf("list forwarding entries of %s: %w", name, err)
	}
	dst := map[string]netip.Addr{}
	for _, f := range fdb {
		if f.Flags&netlink.NTF_SELF == 0 || f.IP == nil || f.State&unix.NUD_PERMANENT == 0 {
			continue // learned by the bridge (master), or not one of ours
		}
		if a, ok := netip.AddrFromSlice(f.IP); ok {
			dst[f.HardwareAddr.String()] = a.Unmap()
		}
	}
	out := map[netip.Addr]Remote{}
	for _, n := range neighs {
		if n.State&unix.NUD_PERMANENT == 0 || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) {
			continue
		}
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		mac := n.HardwareAddr.String()
		out[a.Unmap()] = Remote{IP: a.Unmap(), MAC: mac, VTEP: dst[mac]}
	}
	return out, dst, nil
}

// SetRemote programs one remote endpoint on a VXLAN device: its MAC behind
// its host's VTEP, and its IP at that MAC for the device's ARP and neighbour
// discovery proxy. Replaces what was there for the same IP or MAC.
func SetRemote(name string, r Remote) error {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(r.MAC)
	if err != nil {
		return fmt.Errorf("remote %s: MAC %q: %w", r.IP, r.MAC, err)
	}
	fdb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: unix.NUD_PERMANENT, HardwareAddr: mac, IP: r.VTEP.AsSlice()}
	if err := netlink.NeighSet(fdb); err != nil {
		return fmt.Errorf("forwarding entry %s -> %s on %s: %w", mac, r.VTEP, name, err)
	}
	neigh := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: neighFamily(r.IP), State: unix.NUD_PERMANENT,
		IP: r.IP.AsSlice(), HardwareAddr: mac}
	if err := netlink.NeighSet(neigh); err != nil {
		return fmt.Errorf("neighbour %s -> %s on %s: %w", r.IP, mac, name, err)
	}
	return nil
}

// DelRemote removes what SetRemote programmed; a missing entry or device is
// fine. The forwarding entry goes only when mac and vtep are both known.
func DelRemote(name string, ip netip.Addr, mac string, vtep netip.Addr) error {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := existing(name)
	if l == nil {
		return err
	}
	var errs []error
	if ip.IsValid() {
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: neighFamily(ip), IP: ip.AsSlice()}
		if err := netlink.NeighDel(n); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("remove neighbour %s from %s: %w", ip, name, err))
		}
	}
	if hw, err := net.ParseMAC(mac); err == nil && vtep.IsValid() {
		f := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, HardwareAddr: hw, IP: vtep.AsSlice()}
		if err := netlink.NeighDel(f); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("remove forwarding entry %s from %s: %w", mac, name, err))
		}
	}
	return errors.Join(errs...)
}

// neighFamily is the neighbour table an address's entry goes in: ARP for
// IPv4, neighbour discovery for IPv6 (the device's proxy answers both).
func neighFamily(a netip.Addr) int {
	if a.Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func gone(err error) bool { return errors.Is(err, unix.ENOENT) || isNotFound(err) }

// AddrMTU is the MTU of the link that holds address a in this namespace.
func AddrMTU(a netip.Addr) (int, string, error) {
	defer timing.Since(timing.Netlink, time.Now())
	addrs, err := netlink.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return 0, "", err
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			l, err := netlink.LinkByIndex(x.LinkIndex)
			if err != nil {
				return 0, "", err
			}
			return l.Attrs().MTU, l.Attrs().Name, nil
		}
	}
	return 0, "", fmt.Errorf("no link in this network namespace holds the advertise address %s", a)
}
