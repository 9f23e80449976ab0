package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// nf_tables numbers (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	msgGetGen = 10<<8 | 16 // NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN
	msgNewGen = 10<<8 | 15 // NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWGEN
	nftaGenID = 1
)

// rulesetGeneration returns the nf_tables generation of the calling
// thread's network namespace: a counter the kernel bumps at every committed
// change of any nf_tables table (iptables-nft, ip6tables-nft and nft all
// commit through it). An unchanged generation means an unchanged ruleset,
// so a copy read at that generation is still exact. It costs one netlink
// round trip, against tens of milliseconds for an iptables-save of a large
// ruleset. The legacy backend does not bump it.
func rulesetGeneration() (uint32, error) {
	req := nl.NewNetlinkRequest(msgGetGen, 0)
	req.AddRawData([]byte{unix.AF_UNSPEC, 0, 0, 0}) // nfgenmsg: family, NFNETLINK_V0, res_id
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, msgNewGen)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[4:]) // after the nfgenmsg
		if err != nil {
			return 0, fmt.Errorf("nf_tables generation: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED == nftaGenID && len(a.Value) >= 4 {
				return binary.BigEndian.Uint32(a.Value), nil
			}
		}
	}
	return 0, errors.New("nf_tables generation: no answer")
}
