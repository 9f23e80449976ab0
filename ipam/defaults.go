package ipam

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultRanges is where automatic pools come from unless --default-pools
// says otherwise: 4096 IPv4 /24s that stay clear of Docker's own defaults
// (172.17-31/16, 192.168/16), and IPv6 /64s from a fixed ULA /48.
const DefaultRanges = "10.208.0.0/12:24,fd6d:796e:6574::/48:64"

// Range is a base prefix cut into pools of Size bits.
type Range struct {
	Base netip.Prefix
	Size int
}

func (r Range) String() string { return fmt.Sprintf("%s:%d", r.Base, r.Size) }

// ParseRanges parses "BASE/LEN:SIZE[,BASE/LEN:SIZE...]", e.g.
// "10.208.0.0/12:24,fd00:1::/48:64".
func ParseRanges(s string) ([]Range, error) {
	var out []Range
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, err := parseRange(item)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("default pools %q: give at least one BASE/LEN:SIZE, e.g. %s", s, DefaultRanges)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[i].Base.Overlaps(out[j].Base) {
				return nil, fmt.Errorf("default pools %s and %s overlap: give disjoint ranges", out[i].Base, out[j].Base)
			}
		}
	}
	return out, nil
}

func parseRange(item string) (Range, error) {
	slash := strings.LastIndex(item, "/")
	colon := strings.LastIndex(item, ":")
	if slash < 0 || colon < slash {
		return Range{}, fmt.Errorf("default pool %q: want BASE/LEN:SIZE, e.g. 10.208.0.0/12:24", item)
	}
	base, err := netip.ParsePrefix(item[:colon])
	if err != nil {
		return Range{}, fmt.Errorf("default pool %q: %v", item, err)
	}
	if base != base.Masked() {
		return Range{}, fmt.Errorf("default pool %q: base %s is not in network form: use %s", item, base, base.Masked())
	}
	size, err := strconv.Atoi(item[colon+1:])
	bits := base.Addr().BitLen()
	if err != nil || size < base.Bits() || size > bits {
		return Range{}, fmt.Errorf("default pool %q: size %q must be a prefix length from %d to %d", item, item[colon+1:], base.Bits(), bits)
	}
	if (bits == 32 && size > 30) || (bits == 128 && size > 126) {
		return Range{}, fmt.Errorf("default pool %q: /%d pools hold no host addresses: use /%d or shorter", item, size, bits-2)
	}
	return Range{Base: base, Size: size}, nil
}

// nth returns the i-th pool of the range (i counted from 0) and whether it exists.
func (r Range) nth(i uint64) (netip.Prefix, bool) {
	shift := r.Size - r.Base.Bits()
	if shift < 64 && i >= 1<<shift {
		return netip.Prefix{}, false
	}
	a := addOffset(r.Base.Addr(), i, r.Base.Addr().BitLen()-r.Size)
	return netip.PrefixFrom(a, r.Size), true
}

// count is how many pools the range holds, saturated at 2^63.
func (r Range) count() uint64 {
	shift := r.Size - r.Base.Bits()
	if shift >= 63 {
		return 1 << 63
	}
	return 1 << shift
}

// index is the position of p inside the range (p must be one of its pools).
func (r Range) index(p netip.Prefix) uint64 {
	return offsetOf(r.Base.Addr(), p.Addr(), r.Base.Addr().BitLen()-r.Size)
}

// addOffset returns a + (i << shift), treating addresses as big-endian integers.
func addOffset(a netip.Addr, i uint64, shift int) netip.Addr {
	b := a.As16()
	hi, lo := be64(b[:8]), be64(b[8:])
	// (hi,lo) += i << shift, in 128 bits.
	var addHi, addLo uint64
	switch {
	case shift >= 128:
	case shift >= 64:
		addHi = i << (shift - 64)
	case shift == 0:
		addLo = i
	default:
		addLo = i << shift
		addHi = i >> (64 - shift)
	}
	nlo := lo + addLo
	carry := uint64(0)
	if nlo < lo {
		carry = 1
	}
	hi += addHi + carry
	putBE64(b[:8], hi)
	putBE64(b[8:], nlo)
	out := netip.AddrFrom16(b)
	if a.Is4() {
		return out.Unmap()
	}
	return out
}

// offsetOf returns (x - base) >> shift, for x >= base within 2^64 pools.
func offsetOf(base, x netip.Addr, shift int) uint64 {
	b, c := base.As16(), x.As16()
	bhi, blo := be64(b[:8]), be64(b[8:])
	chi, clo := be64(c[:8]), be64(c[8:])
	lo := clo - blo
	borrow := uint64(0)
	if clo < blo {
		borrow = 1
	}
	hi := chi - bhi - borrow
	switch {
	case shift >= 64:
		return hi >> (shift - 64)
	case shift == 0:
		return lo
	default:
		return lo>>shift | hi<<(64-shift)
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func putBE64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}
