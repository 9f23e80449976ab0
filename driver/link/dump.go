package link

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS (linux/rtnetlink.h),
// which neither x/sys/unix nor netlink names.
const rtextFilterSkipStats = 1 << 3

// linkBrief is what the whole-namespace queries need of a link.
type linkBrief struct {
	index, master int32
	name          string
}

// dumpLinks lists every link of this namespace with its name and master
// only. netlink.LinkList decodes every attribute of every link (statistics,
// VF info, protocol data): with a few thousand veths that is tens of
// megabytes of garbage at start-up, and memory peaks there. The kernel is
// also asked to leave the statistics out, and each answer is read as it
// arrives: kept until the end, the answers of 6,000 links (their receive
// buffers) were the largest thing a start held at once.
func dumpLinks() ([]linkBrief, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
	var out []linkBrief
	err := req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWLINK, func(m []byte) bool {
		if l, ok := parseLinkBrief(m); ok {
			out = append(out, l)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return out, nil
}

// parseLinkBrief reads an RTM_NEWLINK message's index, name and master;
// the name is copied out of the receive buffer.
func parseLinkBrief(m []byte) (linkBrief, bool) {
	if len(m) < unix.SizeofIfInfomsg {
		return linkBrief{}, false
	}
	l := linkBrief{index: int32(binary.NativeEndian.Uint32(m[4:8]))}
	for a := m[unix.SizeofIfInfomsg:]; len(a) >= unix.SizeofRtAttr; {
		alen := int(binary.NativeEndian.Uint16(a[0:2]))
		if alen < unix.SizeofRtAttr || alen > len(a) {
			break
		}
		val := a[unix.SizeofRtAttr:alen]
		switch binary.NativeEndian.Uint16(a[2:4]) {
		case unix.IFLA_IFNAME:
			if n := len(val); n > 0 && val[n-1] == 0 {
				val = val[:n-1]
			}
			l.name = string(val)
		case unix.IFLA_MASTER:
			if len(val) >= 4 {
				l.master = int32(binary.NativeEndian.Uint32(val))
			}
		}
		next := (alen + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if next > len(a) {
			break
		}
		a = a[next:]
	}
	return l, true
}
