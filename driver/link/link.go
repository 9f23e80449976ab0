// Package link creates and removes the kernel links mynet uses (bridges,
// veth pairs) through netlink. Every helper is idempotent: ensuring what
// exists changes nothing, deleting what is gone succeeds.
package link

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mynet/mynet/timing"
)

// MaxNameLen is the kernel's limit on interface names (IFNAMSIZ - 1).
const MaxNameLen = 15

// ValidName reports why name cannot be an interface name, or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("interface name %q is %d bytes: at most %d are allowed", name, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case name[0] == '-':
		// It would read as an option to iptables, ip and tc.
		return fmt.Errorf("interface name %q starts with '-': use a letter or digit first", name)
	}
	for _, r := range name {
		// Quotes, '!', '+' and the like mean something to iptables-restore.
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("interface name %q has the character %q: use letters, digits, '-', '_' and '.'", name, r)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// existing looks a link up: a missing one is nil without an error, which is
// all a removal needs to know to be done.
func existing(name string) (netlink.Link, error) {
	switch l, err := netlink.LinkByName(name); {
	case err == nil:
		return l, nil
	case isNotFound(err):
		return nil, nil
	default:
		return nil, err
	}
}

// Exists reports whether a link of that name exists.
func Exists(name string) (bool, error) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := existing(name)
	return l != nil, err
}

// Bridge is a bridge SetUpBridge found or made: what later calls on it need,
// without looking it up again (a start with a thousand bridges would ask
// the kernel for each of them several times).
type Bridge struct {
	Name  string
	Index int
}

// SetUpBridge makes sure a bridge called name exists and is up, with the
// given MTU when mtu > 0. created says whether this call made it. A link of
// that name that is not a bridge is an error. A bridge it makes gets the MAC
// address mac (nil: a random one). A bridge given none would take the lowest
// MAC of its ports, which changes as containers join and leave, and every
// container's cached neighbour entry for the gateway would then point at an
// address the bridge no longer answers to: their replies to the host and to
// published ports are dropped until the entry expires (up to a minute). The
// same mac for a bridge made again keeps those entries right.
// It returns the bridge, for the calls that follow on it; a bridge already
// up costs one request.
func SetUpBridge(name string, mtu int, mac net.HardwareAddr) (br Bridge, created bool, err error) {
	defer timing.Since(timing.Netlink, time.Now())
	br.Name = name
	l, err := netlink.LinkByName(name)
	if isNotFound(err) {
		// Name, MTU, MAC and "up" all go in the request that creates it, and
		// the library reads back its index: two round trips after the lookup.
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.Flags, attrs.MTU = name, net.FlagUp, max(mtu, 0)
		if attrs.HardwareAddr = mac; mac == nil {
			if attrs.HardwareAddr, err = randomMAC(); err != nil {
				return br, false, fmt.Errorf("create bridge %s: %w", name, err)
			}
		}
		nb := &netlink.Bridge{LinkAttrs: attrs}
		switch err = netlink.LinkAdd(nb); {
		case err == nil && nb.Index != 0:
			br.Index = nb.Index
			return br, true, nil
		case err == nil:
			created = true
		case !errors.Is(err, unix.EEXIST): // EEXIST: made by someone else since the lookup, not ours
			return br, false, fmt.Errorf("create bridge %s: %w", name, err)
		}
		l, err = netlink.LinkByName(name)
	}
	if err != nil {
		return br, created, fmt.Errorf("look up bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return br, false, fmt.Errorf("interface %s exists and is a %s, not a bridge: choose another bridge name", name, l.Type())
	}
	br.Index = l.Attrs().Index
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return br, created, fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return br, created, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return br, created, nil
}

// findBridge looks up the bridge a link goes on, or says which is missing.
func findBridge(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", name, err)
	}
	return l, nil
}

// randomMAC is a random locally administered unicast MAC address.
func randomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC address: %w", err)
	}
	return localUnicast(mac), nil
}

// StableMAC is a locally administered unicast MAC address derived from
// seed: the same seed, the same address.
func StableMAC(seed string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(seed))
	return localUnicast(net.HardwareAddr(sum[:6]))
}

func localUnicast(mac net.HardwareAddr) net.HardwareAddr {
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// PinBridgeMAC makes a bridge's current MAC address its own, so that ports
// joining or leaving no longer change it (see SetUpBridge): for bridges
// made before SetUpBridge gave them one. A bridge whose address was set
// already is left alone.
func PinBridgeMAC(name string) error {
	defer timing.Since(timing.Netlink, time.Now())
	if b, err := os.ReadFile("/sys/class/net/" + name + "/addr_assign_type"); err == nil && strings.TrimSpace(string(b)) == addrAssignSet {
		return nil
	}
	l, err := findBridge(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(l, l.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("keep the MAC address %s of bridge %s: %w", l.Attrs().HardwareAddr, name, err)
	}
	return nil
}

// addrAssignSet is NET_ADDR_SET in /sys/class/net/*/addr_assign_type: the
// address was given, not picked by the kernel.
const addrAssignSet = "3"

// SetDown takes a link down, which takes its routes with it. A missing
// link is fine.
func SetDown(name string) error {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := existing(name)
	if l == nil {
		return err
	}
	if err := netlink.LinkSetDown(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("set %s down: %w", name, err)
	}
	return nil
}

// Delete removes a link. A missing link is fine.
func Delete(name string) error {
	defer timing.Since(timing.Netlink, time.Now())
	return deleteLink(name)
}

func deleteLink(name string) error {
	l, err := existing(name)
	if l == nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// SetAlias sets the bridge's alias (the mark of the instance that made
// it): one request, by index.
func (br Bridge) SetAlias(alias string) error {
	defer timing.Since(timing.Netlink, time.Now())
	l := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br.Name, Index: br.Index}}
	if err := netlink.LinkSetAlias(l, alias); err != nil {
		return fmt.Errorf("mark %s: %w", br.Name, err)
	}
	return nil
}

// EnsureAddr adds an address (with its prefix length) to the bridge unless
// present.
func (br Bridge) EnsureAddr(p netip.Prefix) (added bool, err error) {
	defer timing.Since(timing.Netlink, time.Now())
	l := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br.Name, Index: br.Index}}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD // the gateway must answer at once
	}
	switch err := netlink.AddrAdd(l, addr); {
	case errors.Is(err, unix.EEXIST):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("add %s to %s: %w", p, br.Name, err)
	}
	return true, nil
}

// DelAddr removes an address from a link. Missing link or address is fine.
func DelAddr(name string, p netip.Prefix) error {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := existing(name)
	if l == nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.AddrDel(l, addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s from %s: %w", p, name, err)
	}
	return nil
}

// Veth describes a veth pair whose host end sits on a bridge.
type Veth struct {
	Host, Peer string
	Bridge     string
	MTU        int              // 0 = kernel default
	PeerMAC    net.HardwareAddr // nil = kernel random
	HostMAC    net.HardwareAddr // nil = kernel random
}

// CreateVeth creates the pair, puts the host end on the bridge (hairpin on,
// so a container can reach its own published port) and brings it up. The
// peer stays down in the host namespace for Docker to move. On failure
// nothing is left behind.
func CreateVeth(v Veth) (retErr error) {
	defer timing.Since(timing.Netlink, time.Now())
	br, err := findBridge(v.Bridge)
	if err != nil {
		return err
	}
	// One create request does most of it: both ends' MTU (the library
	// gives the peer the host end's), both MACs, the host end up; LinkAdd
	// then puts it on the bridge. That is 5 round trips a veth, not 8: a
	// start after a reboot makes thousands.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.Host
	attrs.MTU = v.MTU
	attrs.HardwareAddr = v.HostMAC
	attrs.Flags = net.FlagUp
	attrs.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: v.Peer, PeerHardwareAddr: v.PeerMAC}
	if err := netlink.LinkAdd(veth); err != nil {
		err = fmt.Errorf("create veth %s/%s: %w", v.Host, v.Peer, err)
		if errors.Is(err, unix.EEXIST) {
			return err // the name is someone else's link: never ours to delete
		}
		// Made, but not put on the bridge: nothing is left behind.
		return errors.Join(err, deleteLink(v.Host))
	}
	defer func() {
		if retErr != nil {
			if err := deleteLink(v.Host); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("undo: %w", err))
			}
		}
	}()
	if err := netlink.LinkSetHairpin(veth, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", v.Host, err)
	}
	return nil
}

// Attach puts a host-end link on a bridge with hairpin on and brings it up.
func Attach(l netlink.Link, br netlink.Link) error {
	defer timing.Since(timing.Netlink, time.Now())
	return attach(l, br)
}

func attach(l netlink.Link, br netlink.Link) error {
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", l.Attrs().Name, br.Attrs().Name, err)
	}
	if err := netlink.LinkSetHairpin(l, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", l.Attrs().Name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// AttachByName is Attach by link names.
func AttachByName(name, bridge string) error {
	defer timing.Since(timing.Netlink, time.Now())
	br, err := findBridge(bridge)
	if err != nil {
		return err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return attach(l, br)
}

// Master returns the name of the bridge a link is on ("" if none).
func Master(name string) (string, error) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return "", err
	}
	if l.Attrs().MasterIndex == 0 {
		return "", nil
	}
	m, err := netlink.LinkByIndex(l.Attrs().MasterIndex)
	if err != nil {
		return "", err
	}
	return m.Attrs().Name, nil
}

// Masters lists every link of this namespace with the name of its master
// ("" for none), from one netlink dump: a restart with thousands of links
// asks once instead of two requests per link.
func Masters() (map[string]string, error) {
	defer timing.Since(timing.Netlink, time.Now())
	links, err := dumpLinks()
	if err != nil {
		return nil, err
	}
	byIndex := make(map[int32]string, len(links))
	for _, l := range links {
		byIndex[l.index] = l.name
	}
	out := make(map[string]string, len(links))
	for _, l := range links {
		out[l.name] = byIndex[l.master]
	}
	return out, nil
}

// Names lists every link name in this namespace.
func Names() ([]string, error) {
	defer timing.Since(timing.Netlink, time.Now())
	links, err := dumpLinks()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(links))
	for _, l := range links {
		out = append(out, l.name)
	}
	return out, nil
}

// FlushConntrack forgets tracked flows from or to ip (original direction
// source, or reply source after DNAT), so a published port that moves, or an
// address given to the next container, does not inherit stale UDP flows.
func FlushConntrack(ip netip.Addr) error {
	defer timing.Since(timing.Netlink, time.Now())
	family := netlink.InetFamily(unix.AF_INET)
	if ip.Is6() {
		family = unix.AF_INET6
	}
	var filters []netlink.CustomConntrackFilter
	for _, t := range []netlink.ConntrackFilterType{netlink.ConntrackOrigSrcIP, netlink.ConntrackReplySrcIP} {
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(t, ip.AsSlice()); err != nil {
			return err
		}
		filters = append(filters, f)
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, filters...); err != nil {
		return fmt.Errorf("flush conntrack entries of %s: %w", ip, err)
	}
	return nil
}

// FlushMarkedConntrack forgets the tracked flows that carry every bit of
// mark in their connection mark and come from or go to an address of one of
// subnets (original direction source, or reply source). Flows without the
// mark are someone else's: they stay.
func FlushMarkedConntrack(subnets []netip.Prefix, mark uint32) error {
	defer timing.Since(timing.Netlink, time.Now())
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		f := markedFlows{mark: mark}
		for _, p := range subnets {
			if p.Addr().Is6() == (fam == unix.AF_INET6) {
				f.subnets = append(f.subnets, p)
			}
		}
		if len(f.subnets) == 0 {
			continue
		}
		if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.InetFamily(fam), f); err != nil {
			return fmt.Errorf("flush marked conntrack entries of %v: %w", f.subnets, err)
		}
	}
	return nil
}

// markedFlows matches flows with all bits of mark from or to subnets.
type markedFlows struct {
	subnets []netip.Prefix
	mark    uint32
}

func (f markedFlows) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Mark&f.mark != f.mark {
		return false
	}
	for _, ip := range []net.IP{flow.Forward.SrcIP, flow.Reverse.SrcIP} {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		for _, p := range f.subnets {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// SetAlias marks a link (ifalias), e.g. with the mynet instance that owns it.
func SetAlias(name, alias string) error {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if l.Attrs().Alias == alias {
		return nil
	}
	if err := netlink.LinkSetAlias(l, alias); err != nil {
		return fmt.Errorf("mark %s: %w", name, err)
	}
	return nil
}

// AliasAndMAC returns a link's alias and MAC address (zero values if the
// link is missing).
func AliasAndMAC(name string) (string, net.HardwareAddr) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return "", nil
	}
	return l.Attrs().Alias, l.Attrs().HardwareAddr
}

// Alias returns a link's alias ("" if none or if the link is missing).
func Alias(name string) string {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return ""
	}
	return l.Attrs().Alias
}
