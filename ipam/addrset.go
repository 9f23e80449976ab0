package ipam

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"sort"
)

// addrRun is a closed interval [First, Last] of consecutive addresses.
type addrRun struct {
	First, Last netip.Addr
}

// AddrSet is a set of addresses kept as a sorted slice of non-overlapping,
// non-adjacent runs. Memory grows with the number of runs, not with the
// number of addresses, so a dense block of a /64 costs one run.
//
// The zero value is an empty set ready to use. Invalid (zero) addresses are
// never members. An AddrSet is not safe for concurrent use.
type AddrSet struct {
	runs  []addrRun
	count uint64 // Add and Remove change one address at a time, so this never overflows
}

// search returns the index of the first run whose Last is >= a; it equals
// len(s.runs) when every run lies below a.
func (s *AddrSet) search(a netip.Addr) int {
	n := len(s.runs)
	// Fast path for loads and fills that arrive in ascending order.
	if n > 0 && s.runs[n-1].Last.Less(a) {
		return n
	}
	return sort.Search(n, func(i int) bool { return s.runs[i].Last.Compare(a) >= 0 })
}

// Contains reports whether a is in the set.
func (s *AddrSet) Contains(a netip.Addr) bool {
	i := s.search(a)
	return i < len(s.runs) && s.runs[i].First.Compare(a) <= 0
}

// Add inserts a and reports whether it was absent before.
func (s *AddrSet) Add(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	i := s.search(a)
	if i < len(s.runs) && s.runs[i].First.Compare(a) <= 0 {
		return false
	}
	// a sits in the gap between runs[i-1] and runs[i]; Next of the last
	// address of a family is the invalid zero Addr, which equals no member.
	joinsLeft := i > 0 && s.runs[i-1].Last.Next() == a
	joinsRight := i < len(s.runs) && a.Next() == s.runs[i].First
	switch {
	case joinsLeft && joinsRight:
		s.runs[i-1].Last = s.runs[i].Last
		s.runs = append(s.runs[:i], s.runs[i+1:]...)
	case joinsLeft:
		s.runs[i-1].Last = a
	case joinsRight:
		s.runs[i].First = a
	default:
		s.runs = append(s.runs, addrRun{})
		copy(s.runs[i+1:], s.runs[i:])
		s.runs[i] = addrRun{First: a, Last: a}
	}
	s.count++
	return true
}

// Remove deletes a and reports whether it was present.
func (s *AddrSet) Remove(a netip.Addr) bool {
	i := s.search(a)
	if i >= len(s.runs) || s.runs[i].First.Compare(a) > 0 {
		return false
	}
	r := s.runs[i]
	switch {
	case r.First == r.Last:
		s.runs = append(s.runs[:i], s.runs[i+1:]...)
	case a == r.First:
		s.runs[i].First = a.Next()
	case a == r.Last:
		s.runs[i].Last = a.Prev()
	default:
		// Removing from the middle splits the run in two.
		s.runs = append(s.runs, addrRun{})
		copy(s.runs[i+2:], s.runs[i+1:])
		s.runs[i].Last = a.Prev()
		s.runs[i+1] = addrRun{First: a.Next(), Last: r.Last}
	}
	s.count--
	return true
}

// Len returns the number of addresses in the set.
func (s *AddrSet) Len() uint64 { return s.count }

// Runs returns the number of runs the set is stored as.
func (s *AddrSet) Runs() int { return len(s.runs) }

// firstAbsent returns the lowest address in [from, to] that is not in the
// set, in O(log runs): runs are non-adjacent, so the address just after a
// run is always absent.
func (s *AddrSet) firstAbsent(from, to netip.Addr) (netip.Addr, bool) {
	a := from
	if i := s.search(from); i < len(s.runs) && s.runs[i].First.Compare(from) <= 0 {
		a = s.runs[i].Last.Next() // invalid if the run ends at the family's last address
	}
	if !a.IsValid() || a.Compare(to) > 0 {
		return netip.Addr{}, false
	}
	return a, true
}

// addrSpan counts the addresses in [first, last] (same family), saturating
// at math.MaxUint64; it is 0 when last < first.
func addrSpan(first, last netip.Addr) uint64 {
	if last.Less(first) {
		return 0
	}
	f, l := first.As16(), last.As16()
	lo, borrow := bits.Sub64(binary.BigEndian.Uint64(l[8:]), binary.BigEndian.Uint64(f[8:]), 0)
	hi, _ := bits.Sub64(binary.BigEndian.Uint64(l[:8]), binary.BigEndian.Uint64(f[:8]), borrow)
	if hi != 0 || lo == math.MaxUint64 {
		return math.MaxUint64
	}
	return lo + 1
}

// addrPrefixLast returns the last address of p (the IPv4 broadcast address
// when p is a pool).
func addrPrefixLast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return last
}
