package ipam

import (
	"errors"
	"net/netip"
	"testing"
)

// allocFuzzConfigs are small pools (so the model can enumerate them), with
// and without a range, including the tops of both address families.
var allocFuzzConfigs = []struct{ pool, rng string }{
	{"10.0.0.0/28", "10.0.0.0/28"},
	{"10.0.0.0/28", "10.0.0.8/29"}, // range holds the broadcast
	{"10.0.0.0/28", "10.0.0.0/29"}, // range holds the network address
	{"10.0.0.0/27", "10.0.0.12/30"},
	{"10.0.0.0/30", "10.0.0.0/30"},
	{"255.255.255.240/28", "255.255.255.248/29"},
	{"fd00::/124", "fd00::/124"},
	{"fd00::/124", "fd00::8/125"},
	{"fd00::/124", "fd00::/126"},
	{"fd00::/126", "fd00::/126"},
	{"fd00::/64", "fd00::ffff:ffff:ffff:fff0/124"}, // range at the top of a /64
	{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"},
}

// allocModel is the obviously correct reference: a map of held addresses
// and the ordered list of usable addresses of the range.
type allocModel struct {
	pool, rng          netip.Prefix
	network, broadcast netip.Addr
	usable             []netip.Addr // in order
	held               map[netip.Addr]bool
	cursor             netip.Addr
}

func newAllocModel(pool, rng netip.Prefix) *allocModel {
	m := &allocModel{pool: pool, rng: rng, network: pool.Addr(), held: map[netip.Addr]bool{}}
	if pool.Addr().Is4() { // fuzzed IPv4 pools are small enough to walk
		for x := pool.Addr(); x.IsValid() && pool.Contains(x); x = x.Next() {
			m.broadcast = x
		}
	}
	for x := rng.Addr(); x.IsValid() && rng.Contains(x); x = x.Next() {
		if x != m.network && x != m.broadcast {
			m.usable = append(m.usable, x)
		}
	}
	return m
}

// candidates are the addresses the fuzzer picks from: the range and the
// pool boundaries with their outside neighbours, plus the other family.
func (m *allocModel) candidates() []netip.Addr {
	var out []netip.Addr
	add := func(x netip.Addr) {
		if x.IsValid() {
			out = append(out, x)
		}
	}
	add(m.rng.Addr().Prev().Prev())
	add(m.rng.Addr().Prev())
	for x := m.rng.Addr(); x.IsValid() && m.rng.Contains(x); x = x.Next() {
		add(x)
	}
	last := addrPrefixLast(m.pool)
	add(m.network)
	add(m.network.Prev())
	add(last)
	add(last.Next())
	if m.pool.Addr().Is4() {
		add(netip.MustParseAddr("fd00::1"))
	} else {
		add(netip.MustParseAddr("10.0.0.1"))
	}
	return out
}

// expectNext is next-fit over the usable list: first free after the cursor,
// wrapping around; ok is false when the range is full.
func (m *allocModel) expectNext() (netip.Addr, bool) {
	start := 0
	for i, x := range m.usable {
		if x == m.cursor {
			start = i + 1
		}
	}
	for k := range m.usable {
		x := m.usable[(start+k)%len(m.usable)]
		if !m.held[x] {
			return x, true
		}
	}
	return netip.Addr{}, false
}

func (m *allocModel) expectFirst() (netip.Addr, bool) {
	for _, x := range m.usable {
		if !m.held[x] {
			return x, true
		}
	}
	return netip.Addr{}, false
}

func (m *allocModel) expectReserve(x netip.Addr) error {
	switch {
	case x.Is4() != m.pool.Addr().Is4():
		return ErrWrongFamily
	case !m.pool.Contains(x):
		return ErrOutOfPool
	case x == m.network || x == m.broadcast:
		return ErrReserved
	case m.held[x]:
		return ErrInUse
	}
	return nil
}

func FuzzAllocator(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(0), []byte{0, 0, 0, 0, 0, 0, 2, 3, 0, 0})
	f.Add(uint8(1), []byte{1, 0, 1, 5, 1, 17, 0, 0, 2, 5, 0, 0})
	f.Add(uint8(3), []byte{1, 14, 0, 0, 0, 0, 3, 2, 0, 0, 4, 0})
	f.Add(uint8(5), []byte{0, 0, 0, 0, 2, 4, 4, 0, 0, 0, 0, 0})
	f.Add(uint8(7), []byte{3, 9, 0, 0, 1, 3, 2, 2, 0, 0, 0, 0})
	f.Add(uint8(10), []byte{3, 17, 0, 0, 0, 0, 2, 18, 0, 0})
	f.Add(uint8(11), []byte{0, 0, 0, 0, 1, 5, 2, 2, 0, 0})

	f.Fuzz(func(t *testing.T, config uint8, ops []byte) {
		if len(ops) > 512 { // longer sequences add little and slow minimization
			ops = ops[:512]
		}
		c := allocFuzzConfigs[int(config)%len(allocFuzzConfigs)]
		pool, rng := netip.MustParsePrefix(c.pool), netip.MustParsePrefix(c.rng)
		a, err := NewAllocator(pool, rng)
		if err != nil {
			t.Fatalf("NewAllocator(%s, %s): %v", pool, rng, err)
		}
		m := newAllocModel(pool, rng)
		cands := m.candidates()
		if a.Size() != uint64(len(m.usable)) {
			t.Fatalf("Size() = %d, model has %d usable", a.Size(), len(m.usable))
		}

		for i := 0; i+1 < len(ops); i += 2 {
			x := cands[int(ops[i+1])%len(cands)]
			switch ops[i] % 5 {
			case 0:
				allocFuzzNext(t, a, m)
			case 1:
				got, want := a.Reserve(x), m.expectReserve(x)
				if !errors.Is(got, want) || (got == nil) != (want == nil) {
					t.Fatalf("Reserve(%s) = %v, want %v", x, got, want)
				}
				if want == nil {
					m.held[x] = true
				}
			case 2:
				if got := a.Release(x); got != m.held[x] {
					t.Fatalf("Release(%s) = %v, model held %v", x, got, m.held[x])
				}
				delete(m.held, x)
			case 3:
				a.SetCursor(x)
				m.cursor = x
			case 4:
				got, err := a.First()
				want, ok := m.expectFirst()
				if ok != (err == nil) || got != want {
					t.Fatalf("First = %s, %v; want %s (free: %v)", got, err, want, ok)
				}
				if ok {
					m.held[want] = true
				}
			}
			if a.Used() != uint64(len(m.held)) {
				t.Fatalf("Used() = %d, model holds %d", a.Used(), len(m.held))
			}
			for _, y := range cands {
				if a.Taken(y) != m.held[y] {
					t.Fatalf("Taken(%s) = %v, model %v", y, a.Taken(y), m.held[y])
				}
			}
		}

		// Fill the range: every free usable address comes out exactly once.
		for range len(m.usable) + 1 {
			if _, ok := allocFuzzNext(t, a, m); !ok {
				break
			}
		}
		// With the range full, a released address is the only one Next returns.
		for _, x := range m.usable {
			if !a.Release(x) {
				t.Fatalf("Release(%s) of a full range = false", x)
			}
			delete(m.held, x)
			if got, ok := allocFuzzNext(t, a, m); !ok || got != x {
				t.Fatalf("Next after releasing %s in a full range = %s", x, got)
			}
			if _, err := a.Next(); !errors.Is(err, ErrPoolFull) {
				t.Fatalf("Next on a full range = %v, want ErrPoolFull", err)
			}
		}
	})
}

// allocFuzzNext calls Next and checks it against the model, which it then
// updates; it reports whether an address was handed out.
func allocFuzzNext(t *testing.T, a *Allocator, m *allocModel) (netip.Addr, bool) {
	t.Helper()
	got, err := a.Next()
	want, ok := m.expectNext()
	if !ok {
		if !errors.Is(err, ErrPoolFull) {
			t.Fatalf("Next = %s, %v; want ErrPoolFull", got, err)
		}
		return netip.Addr{}, false
	}
	if err != nil || got != want {
		t.Fatalf("Next = %s, %v; want %s (cursor %s)", got, err, want, m.cursor)
	}
	// Redundant with the model, but these are the invariants that matter.
	if m.held[got] || got == m.network || got == m.broadcast || !m.rng.Contains(got) {
		t.Fatalf("Next handed out %s: held %v, network %s, broadcast %s, range %s", got, m.held[got], m.network, m.broadcast, m.rng)
	}
	m.held[got] = true
	m.cursor = got
	if a.Cursor() != got {
		t.Fatalf("Cursor() = %s after Next returned %s", a.Cursor(), got)
	}
	return got, true
}
