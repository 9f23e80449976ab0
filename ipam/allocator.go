package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinels returned (wrapped) by Allocator; test with errors.Is.
var (
	ErrPoolFull    = errors.New("pool is full")
	ErrWrongFamily = errors.New("address family does not match the pool")
	ErrOutOfPool   = errors.New("address is outside the pool")
	ErrReserved    = errors.New("address is reserved")
	ErrInUse       = errors.New("address is already in use")
)

// Allocator hands out the addresses of one pool. It does no persistence and
// no locking: callers serialise access and store Cursor and the taken
// addresses themselves.
type Allocator struct {
	pool, rng netip.Prefix
	network   netip.Addr // never handed out or reserved
	broadcast netip.Addr // IPv4 only; invalid for IPv6, which has no broadcast
	lo, hi    netip.Addr // first and last usable address of rng
	taken     AddrSet
	cursor    netip.Addr // last address handed out by Next
}

// NewAllocator returns an allocator for pool that hands out addresses from
// rng, which must lie inside pool; pass pool itself when there is no
// separate range. Both prefixes must be in network form (10.0.0.0/16, not
// 10.0.0.1/16).
func NewAllocator(pool netip.Prefix, rng netip.Prefix) (*Allocator, error) {
	if err := allocCheckPrefix("pool", pool); err != nil {
		return nil, err
	}
	if err := allocCheckPrefix("range", rng); err != nil {
		return nil, err
	}
	if pool.Addr().Is4() != rng.Addr().Is4() {
		return nil, fmt.Errorf("range %s and pool %s are of different address families: the range must be a subnet of the pool", rng, pool)
	}
	if rng.Bits() < pool.Bits() || !pool.Contains(rng.Addr()) {
		return nil, fmt.Errorf("range %s is not inside pool %s: the range must be a subnet of the pool", rng, pool)
	}
	longest := pool.Addr().BitLen() - 2 // /30 for IPv4; /126 for IPv6 by policy (a /127 would keep one host)
	if pool.Bits() > longest {
		return nil, fmt.Errorf("pool %s is too small: it must hold at least one host address (use /%d or shorter)", pool, longest)
	}

	a := &Allocator{pool: pool, rng: rng, network: pool.Addr()}
	if pool.Addr().Is4() {
		a.broadcast = addrPrefixLast(pool)
	}
	a.lo, a.hi = rng.Addr(), addrPrefixLast(rng)
	if a.lo == a.network {
		a.lo = a.lo.Next()
	}
	if a.hi == a.broadcast {
		a.hi = a.hi.Prev()
	}
	if a.lo.Compare(a.hi) > 0 {
		return nil, fmt.Errorf("range %s holds no usable address of pool %s (only its network or broadcast address): use a wider range", rng, pool)
	}
	return a, nil
}

func allocCheckPrefix(what string, p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("%s is missing or not a valid prefix: expected an address and a prefix length such as 10.0.0.0/24 or fd00::/64", what)
	}
	if p != p.Masked() {
		return fmt.Errorf("%s %s has host bits set: expected the network form %s", what, p, p.Masked())
	}
	return nil
}

// Next takes and returns the next free usable address of the range.
// It is next-fit: the search starts just after the address Next handed out
// last and wraps around, so a just-released address is not handed out
// again while other addresses are free. Cost is O(log runs).
func (a *Allocator) Next() (netip.Addr, error) {
	start := a.lo
	if a.inRange(a.cursor) && a.cursor != a.hi {
		start = a.cursor.Next()
	}
	addr, ok := a.taken.firstAbsent(start, a.hi)
	if !ok {
		// Wrap around; [start, hi] is full, so this finds one below start if any.
		addr, ok = a.taken.firstAbsent(a.lo, a.hi)
	}
	if !ok {
		return netip.Addr{}, a.fullError()
	}
	a.taken.Add(addr)
	a.cursor = addr
	return addr, nil
}

// First takes and returns the lowest free usable address of the range, the
// conventional choice for a gateway. It does not move the cursor.
func (a *Allocator) First() (netip.Addr, error) {
	addr, ok := a.taken.firstAbsent(a.lo, a.hi)
	if !ok {
		return netip.Addr{}, a.fullError()
	}
	a.taken.Add(addr)
	return addr, nil
}

func (a *Allocator) fullError() error {
	return fmt.Errorf("%w: no free address in %s: all %d usable addresses are taken", ErrPoolFull, a.describe(), a.Size())
}

// describe names the pool, and the range when it differs, for messages.
func (a *Allocator) describe() string {
	if a.rng == a.pool {
		return a.pool.String()
	}
	return fmt.Sprintf("%s (range %s)", a.pool, a.rng)
}

// Reserve takes a specific address. Any usable address of the pool is
// accepted, also outside the range (Docker aux addresses, --ip outside
// --ip-range). It does not move the cursor.
func (a *Allocator) Reserve(addr netip.Addr) error {
	switch {
	case !addr.IsValid():
		return fmt.Errorf("%w: cannot reserve the zero address value in pool %s: expected an %s address", ErrWrongFamily, a.pool, a.family())
	case addr.Is4() != a.pool.Addr().Is4():
		return fmt.Errorf("%w: cannot reserve %s in pool %s: expected an %s address", ErrWrongFamily, addr, a.pool, a.family())
	case !a.pool.Contains(addr):
		return fmt.Errorf("%w: cannot reserve %s: it is not inside pool %s", ErrOutOfPool, addr, a.pool)
	case addr == a.network:
		return fmt.Errorf("%w: cannot reserve %s: it is the network address of pool %s", ErrReserved, addr, a.pool)
	case addr == a.broadcast:
		return fmt.Errorf("%w: cannot reserve %s: it is the broadcast address of pool %s", ErrReserved, addr, a.pool)
	case !a.taken.Add(addr):
		return fmt.Errorf("%w: cannot reserve %s in pool %s: it is already taken", ErrInUse, addr, a.pool)
	}
	return nil
}

func (a *Allocator) family() string {
	if a.pool.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// Release frees addr and reports whether it was taken. Releasing a free
// address is a no-op.
func (a *Allocator) Release(addr netip.Addr) bool { return a.taken.Remove(addr) }

// Taken reports whether addr is held (by Next, First or Reserve).
func (a *Allocator) Taken(addr netip.Addr) bool { return a.taken.Contains(addr) }

// Used returns how many addresses are held, including reserved addresses
// outside the range.
func (a *Allocator) Used() uint64 { return a.taken.Len() }

// Size returns how many usable addresses the range holds, saturating at
// math.MaxUint64 for IPv6 ranges wider than a /64.
func (a *Allocator) Size() uint64 { return addrSpan(a.lo, a.hi) }

// Cursor returns the address Next handed out last (the zero Addr before the
// first call), for the caller to persist.
func (a *Allocator) Cursor() netip.Addr { return a.cursor }

// SetCursor restores a persisted cursor. Next resumes just after it; a
// cursor outside the range (or the zero Addr) makes Next start at the
// beginning of the range.
func (a *Allocator) SetCursor(addr netip.Addr) { a.cursor = addr }

func (a *Allocator) inRange(addr netip.Addr) bool {
	return addr.IsValid() && addr.Compare(a.lo) >= 0 && addr.Compare(a.hi) <= 0
}
