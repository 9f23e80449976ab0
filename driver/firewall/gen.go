package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// nf_tables numbers (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	nfnlSubsysNftables = 10
	nftMsgGetGen       = 16
	nftMsgNewGen       = 15
	nftaGenID          = 1
)

// rulesetGeneration returns the nf_tables generation of the calling
// thread's network namespace: a counter the kernel bumps at every committed
// change of any nf_tables table (iptables-nft, ip6tables-nft and nft all
// commit through it). An unchanged generation means an unchanged ruleset,
// so a copy read at that generation is still exact. It costs one netlink
// round trip, against tens of milliseconds for an iptables-save of a large
// ruleset. The legacy backend does not bump it.
func rulesetGeneration() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("bind netfilter netlink socket: %w", err)
	}
	// nlmsghdr (16 bytes) + nfgenmsg (family, version, res_id).
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], nfnlSubsysNftables<<8|nftMsgGetGen)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	req[16] = unix.AF_UNSPEC
	req[17] = 0 // NFNETLINK_V0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("ask nf_tables generation: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("read nf_tables generation: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, fmt.Errorf("parse nf_tables generation: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					return 0, fmt.Errorf("nf_tables generation: %w", unix.Errno(-code))
				}
			}
		case nfnlSubsysNftables<<8 | nftMsgNewGen:
			if id, ok := genID(m.Data); ok {
				return id, nil
			}
		}
	}
	return 0, errors.New("nf_tables generation: no answer")
}

// genID finds NFTA_GEN_ID (big-endian u32) after the 4-byte nfgenmsg.
func genID(data []byte) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	attrs := data[4:]
	for len(attrs) >= unix.SizeofNlAttr {
		l := int(binary.NativeEndian.Uint16(attrs[0:]))
		typ := binary.NativeEndian.Uint16(attrs[2:]) &^ unix.NLA_F_NESTED
		if l < unix.SizeofNlAttr || l > len(attrs) {
			return 0, false
		}
		if typ == nftaGenID && l >= unix.SizeofNlAttr+4 {
			return binary.BigEndian.Uint32(attrs[unix.SizeofNlAttr:]), true
		}
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next > len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return 0, false
}
