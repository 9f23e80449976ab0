package link

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mynet/mynet/timing"
)

// Modes, by the names Docker's macvlan and ipvlan drivers use.
var (
	MacvlanModes = map[string]netlink.MacvlanMode{
		"bridge": netlink.MACVLAN_MODE_BRIDGE, "private": netlink.MACVLAN_MODE_PRIVATE,
		"vepa": netlink.MACVLAN_MODE_VEPA, "passthru": netlink.MACVLAN_MODE_PASSTHRU,
	}
	IPvlanModes = map[string]netlink.IPVlanMode{
		"l2": netlink.IPVLAN_MODE_L2, "l3": netlink.IPVLAN_MODE_L3, "l3s": netlink.IPVLAN_MODE_L3S,
	}
	IPvlanFlags = map[string]netlink.IPVlanFlag{
		"bridge": netlink.IPVLAN_FLAG_BRIDGE, "private": netlink.IPVLAN_FLAG_PRIVATE, "vepa": netlink.IPVLAN_FLAG_VEPA,
	}
)

// SplitVLAN parses a parent of the form NAME.VID (VID 1-4094). ok is false
// when the name has no such suffix.
func SplitVLAN(parent string) (name string, vid int, ok bool, err error) {
	dot := strings.LastIndex(parent, ".")
	if dot <= 0 || dot == len(parent)-1 {
		return "", 0, false, nil
	}
	n, convErr := strconv.Atoi(parent[dot+1:])
	if convErr != nil {
		return "", 0, false, nil
	}
	if n < 1 || n > 4094 {
		return "", 0, true, fmt.Errorf("parent %q: VLAN id %d is out of range: use 1 to 4094", parent, n)
	}
	return parent[:dot], n, true, nil
}

// EnsureParent makes sure the parent link exists and is up: an existing
// link is used as it is (created=false); a missing NAME.VID is created as an
// 802.1q link on NAME (created=true). Loopback parents are refused.
func EnsureParent(parent string) (created bool, retErr error) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(parent)
	if err == nil {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			return false, fmt.Errorf("parent %s is a loopback interface: give a physical, bond, VLAN or veth interface", parent)
		}
		return false, netlink.LinkSetUp(l)
	}
	if !isNotFound(err) {
		return false, err
	}
	name, vid, isVLAN, err := SplitVLAN(parent)
	if err != nil {
		return false, err
	}
	if !isVLAN {
		return false, fmt.Errorf("parent interface %s does not exist: give an existing interface, NAME.VLAN to create a VLAN sub-interface, or no parent for an isolated network", parent)
	}
	base, err := netlink.LinkByName(name)
	if err != nil {
		return false, fmt.Errorf("parent %s: interface %s does not exist, so VLAN %d cannot be created on it", parent, name, vid)
	}
	if base.Attrs().Flags&net.FlagLoopback != 0 {
		return false, fmt.Errorf("parent %s: %s is a loopback interface", parent, name)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = parent
	attrs.ParentIndex = base.Attrs().Index
	if err := netlink.LinkAdd(&netlink.Vlan{LinkAttrs: attrs, VlanId: vid}); err != nil {
		return false, fmt.Errorf("create VLAN %s: %w (does this kernel have 802.1q?)", parent, err)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, deleteLink(parent))
		}
	}()
	if err := netlink.LinkSetUp(base); err != nil {
		return true, err
	}
	return true, setUp(parent)
}

// EnsureDummy creates (or finds) an up dummy link: the parent of a network
// that reaches nothing outside the host.
func EnsureDummy(name string) (created bool, err error) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err == nil {
		if l.Type() != "dummy" {
			return false, fmt.Errorf("interface %s exists and is a %s, not a dummy", name, l.Type())
		}
		return false, netlink.LinkSetUp(l)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("create dummy %s: %w (does this kernel have the dummy module?)", name, err)
	}
	return true, setUp(name)
}

// SetUp brings a link up.
func SetUp(name string) error {
	defer timing.Since(timing.Netlink, time.Now())
	return setUp(name)
}

func setUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// MTU returns a link's MTU.
func MTU(name string) (int, error) {
	defer timing.Since(timing.Netlink, time.Now())
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().MTU, nil
}

// Lower describes a macvlan or ipvlan link for one container.
type Lower struct {
	Name, Parent string
	Kind         string // "macvlan" or "ipvlan"
	Mode, Flag   string // names from MacvlanModes / IPvlanModes / IPvlanFlags
	MTU          int
	MAC          net.HardwareAddr // macvlan only; nil = kernel random
}

// CreateLower creates the link, down, in this namespace for Docker to move.
func CreateLower(l Lower) (retErr error) {
	defer timing.Since(timing.Netlink, time.Now())
	parent, err := netlink.LinkByName(l.Parent)
	if err != nil {
		return fmt.Errorf("parent %s: %w", l.Parent, err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = l.Name
	attrs.ParentIndex = parent.Attrs().Index
	attrs.MTU = l.MTU
	var nl netlink.Link
	switch l.Kind {
	case "macvlan":
		attrs.HardwareAddr = l.MAC
		nl = &netlink.Macvlan{LinkAttrs: attrs, Mode: MacvlanModes[l.Mode]}
	case "ipvlan":
		nl = &netlink.IPVlan{LinkAttrs: attrs, Mode: IPvlanModes[l.Mode], Flag: IPvlanFlags[l.Flag]}
	default:
		return fmt.Errorf("unknown link kind %q", l.Kind)
	}
	if err := netlink.LinkAdd(nl); err != nil {
		return fmt.Errorf("create %s %s on %s (mode %s): %w", l.Kind, l.Name, l.Parent, l.Mode, err)
	}
	return nil
}
