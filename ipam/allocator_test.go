package ipam

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
)

// allocTestNew builds an allocator; an empty rng means the whole pool.
func allocTestNew(t testing.TB, pool, rng string) *Allocator {
	t.Helper()
	if rng == "" {
		rng = pool
	}
	a, err := NewAllocator(netip.MustParsePrefix(pool), netip.MustParsePrefix(rng))
	if err != nil {
		t.Fatalf("NewAllocator(%s, %s): %v", pool, rng, err)
	}
	return a
}

func allocTestNext(t *testing.T, a *Allocator) netip.Addr {
	t.Helper()
	addr, err := a.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return addr
}

func TestNewAllocatorValidation(t *testing.T) {
	tests := []struct {
		pool, rng string
		wantErr   []string // substrings of the error; nil means success
	}{
		{"10.0.0.0/16", "10.0.0.0/16", nil},
		{"10.0.0.0/16", "10.0.128.0/17", nil},
		{"10.0.0.0/30", "10.0.0.0/30", nil},
		{"10.0.0.0/24", "10.0.0.5/32", nil},
		{"fd00::/64", "fd00::/64", nil},
		{"fd00::/64", "fd00::8000:0:0:0/65", nil},
		{"fd00::/126", "fd00::/126", nil},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff/128", nil}, // no broadcast in IPv6

		{"10.0.0.0/31", "10.0.0.0/31", []string{"pool 10.0.0.0/31 is too small", "at least one host", "use /30 or shorter"}},
		{"10.0.0.0/32", "10.0.0.0/32", []string{"pool 10.0.0.0/32 is too small", "use /30 or shorter"}},
		{"fd00::/127", "fd00::/127", []string{"pool fd00::/127 is too small", "use /126 or shorter"}},
		{"fd00::/128", "fd00::/128", []string{"pool fd00::/128 is too small", "use /126 or shorter"}},
		{"10.0.0.1/24", "10.0.0.0/24", []string{"pool 10.0.0.1/24 has host bits set", "10.0.0.0/24"}},
		{"10.0.0.0/24", "10.0.0.129/25", []string{"range 10.0.0.129/25 has host bits set", "10.0.0.128/25"}},
		{"fd00::1/64", "fd00::/64", []string{"pool fd00::1/64 has host bits set", "fd00::/64"}},
		{"10.0.0.0/24", "fd00::/64", []string{"range fd00::/64", "pool 10.0.0.0/24", "different address families"}},
		{"10.0.0.0/24", "10.0.1.0/25", []string{"range 10.0.1.0/25 is not inside pool 10.0.0.0/24"}},
		{"10.0.0.0/24", "10.0.0.0/23", []string{"range 10.0.0.0/23 is not inside pool 10.0.0.0/24"}},
		{"10.0.0.0/24", "10.0.0.0/32", []string{"range 10.0.0.0/32 holds no usable address of pool 10.0.0.0/24"}},
		{"10.0.0.0/24", "10.0.0.255/32", []string{"range 10.0.0.255/32 holds no usable address"}},
		{"fd00::/64", "fd00::/128", []string{"range fd00::/128 holds no usable address"}},
	}
	for _, tt := range tests {
		t.Run(tt.pool+"_"+tt.rng, func(t *testing.T) {
			_, err := NewAllocator(netip.MustParsePrefix(tt.pool), netip.MustParsePrefix(tt.rng))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}

	if _, err := NewAllocator(netip.Prefix{}, netip.MustParsePrefix("10.0.0.0/24")); err == nil || !strings.Contains(err.Error(), "pool is missing or not a valid prefix") {
		t.Errorf("zero pool: err = %v, want a 'not a valid prefix' error", err)
	}
}

// TestAllocatorNextSequence exhausts small pools with Next and checks the
// order, that network and broadcast are skipped, and the full error.
func TestAllocatorNextSequence(t *testing.T) {
	tests := []struct {
		pool, rng string
		want      []string
	}{
		{"10.0.0.0/29", "", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}},
		{"10.0.0.0/30", "", []string{"10.0.0.1", "10.0.0.2"}},
		{"10.0.0.0/29", "10.0.0.0/30", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
		{"10.0.0.0/29", "10.0.0.4/30", []string{"10.0.0.4", "10.0.0.5", "10.0.0.6"}},
		{"10.0.0.0/24", "10.0.0.7/32", []string{"10.0.0.7"}},
		{"fd00::/125", "", []string{"fd00::1", "fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::6", "fd00::7"}},
		{"fd00::/126", "", []string{"fd00::1", "fd00::2", "fd00::3"}},
		{"fd00::/125", "fd00::4/126", []string{"fd00::4", "fd00::5", "fd00::6", "fd00::7"}},
		{"fd00::/125", "fd00::/126", []string{"fd00::1", "fd00::2", "fd00::3"}},
	}
	for _, tt := range tests {
		t.Run(tt.pool+"_"+tt.rng, func(t *testing.T) {
			a := allocTestNew(t, tt.pool, tt.rng)
			if got := a.Size(); got != uint64(len(tt.want)) {
				t.Errorf("Size() = %d, want %d", got, len(tt.want))
			}
			for i, want := range tt.want {
				if got := allocTestNext(t, a); got != netip.MustParseAddr(want) {
					t.Fatalf("Next #%d = %s, want %s", i, got, want)
				}
				if a.Cursor() != netip.MustParseAddr(want) {
					t.Fatalf("Cursor() = %s after handing out %s", a.Cursor(), want)
				}
			}
			if a.Used() != uint64(len(tt.want)) {
				t.Errorf("Used() = %d, want %d", a.Used(), len(tt.want))
			}
			_, err := a.Next()
			if !errors.Is(err, ErrPoolFull) {
				t.Fatalf("Next on a full range: err = %v, want ErrPoolFull", err)
			}
			if _, err := a.First(); !errors.Is(err, ErrPoolFull) {
				t.Fatalf("First on a full range: err = %v, want ErrPoolFull", err)
			}
		})
	}
}

func TestAllocatorFullErrorMessage(t *testing.T) {
	a := allocTestNew(t, "10.0.0.0/24", "10.0.0.128/25")
	for range a.Size() {
		allocTestNext(t, a)
	}
	_, err := a.Next()
	for _, want := range []string{"no free address in 10.0.0.0/24 (range 10.0.0.128/25)", "all 127 usable addresses are taken"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	b := allocTestNew(t, "fd00::/126", "")
	for range 3 {
		allocTestNext(t, b)
	}
	if _, err := b.Next(); err == nil || !strings.Contains(err.Error(), "no free address in fd00::/126: all 3") {
		t.Errorf("error %v does not name the pool alone", err)
	}
}

// TestAllocatorNextFit checks that a released address is not handed out
// again while others are free, and that the search wraps around.
func TestAllocatorNextFit(t *testing.T) {
	tests := []struct {
		pool, rng string
		taken     int    // Next calls before the release
		release   string // released after the first `taken` calls
		want      []string
	}{
		{"10.0.0.0/29", "", 3, "10.0.0.2", []string{"10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.2"}},
		{"10.0.0.0/29", "", 6, "10.0.0.6", []string{"10.0.0.6"}},
		{"10.0.0.0/29", "", 6, "10.0.0.1", []string{"10.0.0.1"}},
		{"10.0.0.0/29", "10.0.0.4/30", 2, "10.0.0.4", []string{"10.0.0.6", "10.0.0.4"}},
		{"fd00::/125", "", 2, "fd00::1", []string{"fd00::3", "fd00::4", "fd00::5", "fd00::6", "fd00::7", "fd00::1"}},
		{"fd00::/64", "", 3, "fd00::2", []string{"fd00::4", "fd00::5"}},
	}
	for _, tt := range tests {
		t.Run(tt.pool+"_"+tt.rng+"_"+tt.release, func(t *testing.T) {
			a := allocTestNew(t, tt.pool, tt.rng)
			for range tt.taken {
				allocTestNext(t, a)
			}
			if !a.Release(netip.MustParseAddr(tt.release)) {
				t.Fatalf("Release(%s) = false, want true", tt.release)
			}
			for i, want := range tt.want {
				if got := allocTestNext(t, a); got != netip.MustParseAddr(want) {
					t.Fatalf("Next #%d after release = %s, want %s", i, got, want)
				}
			}
		})
	}
}

func TestAllocatorNextSkipsTakenRuns(t *testing.T) {
	a := allocTestNew(t, "10.0.0.0/24", "")
	for _, s := range []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.6"} {
		if err := a.Reserve(netip.MustParseAddr(s)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"10.0.0.1", "10.0.0.5", "10.0.0.7"} {
		if got := allocTestNext(t, a); got != netip.MustParseAddr(want) {
			t.Fatalf("Next = %s, want %s", got, want)
		}
	}
}

func TestAllocatorCursor(t *testing.T) {
	tests := []struct {
		name, pool, rng, cursor string // cursor "" means the zero Addr
		want                    string
	}{
		{"zero cursor starts at the range", "10.0.0.0/24", "10.0.0.128/25", "", "10.0.0.128"},
		{"resumes after the cursor", "10.0.0.0/24", "", "10.0.0.41", "10.0.0.42"},
		{"wraps from the last usable", "10.0.0.0/24", "", "10.0.0.254", "10.0.0.1"},
		{"cursor on broadcast wraps", "10.0.0.0/24", "", "10.0.0.255", "10.0.0.1"},
		{"cursor below the range", "10.0.0.0/24", "10.0.0.128/25", "10.0.0.5", "10.0.0.128"},
		{"cursor above the range", "10.0.0.0/24", "10.0.0.0/25", "10.0.0.200", "10.0.0.1"},
		{"cursor of the other family", "10.0.0.0/24", "", "fd00::5", "10.0.0.1"},
		{"ipv6 wraps from the top", "fd00::/64", "", "fd00::ffff:ffff:ffff:ffff", "fd00::1"},
		{"ipv6 resumes", "fd00::/64", "", "fd00::1:0", "fd00::1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := allocTestNew(t, tt.pool, tt.rng)
			if tt.cursor != "" {
				a.SetCursor(netip.MustParseAddr(tt.cursor))
			}
			if got := allocTestNext(t, a); got != netip.MustParseAddr(tt.want) {
				t.Fatalf("Next = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAllocatorFirst(t *testing.T) {
	a := allocTestNew(t, "10.0.0.0/24", "10.0.0.0/25")
	for range 5 {
		allocTestNext(t, a) // .1 ... .5
	}
	a.Release(netip.MustParseAddr("10.0.0.3"))
	cursor := a.Cursor()
	got, err := a.First()
	if err != nil || got != netip.MustParseAddr("10.0.0.3") {
		t.Fatalf("First = %s, %v; want 10.0.0.3", got, err)
	}
	if !a.Taken(got) {
		t.Error("First did not take the address it returned")
	}
	if a.Cursor() != cursor {
		t.Errorf("First moved the cursor from %s to %s", cursor, a.Cursor())
	}
	if got := allocTestNext(t, a); got != netip.MustParseAddr("10.0.0.6") {
		t.Errorf("Next after First = %s, want 10.0.0.6", got)
	}

	b := allocTestNew(t, "fd00::/64", "fd00::8000:0:0:0/65")
	if got, _ := b.First(); got != netip.MustParseAddr("fd00::8000:0:0:0") {
		t.Errorf("First in an upper IPv6 range = %s, want fd00::8000:0:0:0", got)
	}
}

func TestAllocatorReserve(t *testing.T) {
	tests := []struct {
		pool, rng, addr string
		wantErr         error
		wantMsg         []string
	}{
		{"10.0.0.0/24", "", "10.0.0.10", nil, nil},
		{"10.0.0.0/24", "10.0.0.128/25", "10.0.0.10", nil, nil}, // aux address outside the range
		{"10.0.0.0/24", "10.0.0.128/25", "10.0.0.254", nil, nil},
		{"fd00::/64", "", "fd00::ffff:ffff:ffff:ffff", nil, nil}, // IPv6 has no broadcast
		{"fd00::/64", "fd00::/120", "fd00::1:0", nil, nil},
		{"10.0.0.0/24", "", "fd00::1", ErrWrongFamily, []string{"fd00::1", "10.0.0.0/24", "IPv4"}},
		{"10.0.0.0/24", "", "::ffff:10.0.0.1", ErrWrongFamily, []string{"::ffff:10.0.0.1", "10.0.0.0/24"}},
		{"fd00::/64", "", "10.0.0.1", ErrWrongFamily, []string{"10.0.0.1", "fd00::/64", "IPv6"}},
		{"10.0.0.0/24", "", "10.0.1.1", ErrOutOfPool, []string{"10.0.1.1", "10.0.0.0/24"}},
		{"fd00::/64", "", "fd00:0:0:1::1", ErrOutOfPool, []string{"fd00:0:0:1::1", "fd00::/64"}},
		{"10.0.0.0/24", "", "10.0.0.0", ErrReserved, []string{"10.0.0.0", "network address", "10.0.0.0/24"}},
		{"10.0.0.0/24", "", "10.0.0.255", ErrReserved, []string{"10.0.0.255", "broadcast address", "10.0.0.0/24"}},
		{"10.0.0.0/24", "10.0.0.128/25", "10.0.0.255", ErrReserved, []string{"broadcast"}},
		{"fd00::/64", "", "fd00::", ErrReserved, []string{"fd00::", "network address"}},
	}
	for _, tt := range tests {
		t.Run(tt.pool+"_"+tt.addr, func(t *testing.T) {
			a := allocTestNew(t, tt.pool, tt.rng)
			addr := netip.MustParseAddr(tt.addr)
			err := a.Reserve(addr)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Reserve(%s) = %v, want %v", tt.addr, err, tt.wantErr)
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if got := a.Taken(addr); got != (err == nil) {
				t.Errorf("Taken(%s) = %v after Reserve returned %v", tt.addr, got, err)
			}
			if err != nil {
				return
			}
			err = a.Reserve(addr)
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), tt.addr) || !strings.Contains(err.Error(), tt.pool) {
				t.Errorf("second Reserve(%s) = %v, want ErrInUse naming the address and pool", tt.addr, err)
			}
			if a.Cursor().IsValid() {
				t.Errorf("Reserve moved the cursor to %s", a.Cursor())
			}
		})
	}

	a := allocTestNew(t, "10.0.0.0/24", "")
	if err := a.Reserve(netip.Addr{}); !errors.Is(err, ErrWrongFamily) {
		t.Errorf("Reserve(zero Addr) = %v, want ErrWrongFamily", err)
	}
}

func TestAllocatorReleaseIsIdempotent(t *testing.T) {
	a := allocTestNew(t, "10.0.0.0/24", "")
	addr := allocTestNext(t, a)
	if !a.Release(addr) {
		t.Fatal("first Release = false, want true")
	}
	if a.Release(addr) {
		t.Error("second Release = true, want false")
	}
	for _, s := range []string{"10.0.0.77", "10.0.0.0", "10.0.0.255", "10.9.9.9", "fd00::1"} {
		if a.Release(netip.MustParseAddr(s)) {
			t.Errorf("Release(%s) of a never taken address = true", s)
		}
	}
	if a.Used() != 0 {
		t.Errorf("Used() = %d, want 0", a.Used())
	}
}

func TestAllocatorSize(t *testing.T) {
	tests := []struct {
		pool, rng string
		want      uint64
	}{
		{"10.0.0.0/30", "", 2},
		{"10.0.0.0/24", "", 254},
		{"10.0.0.0/24", "10.0.0.0/25", 127},
		{"10.0.0.0/24", "10.0.0.128/25", 127},
		{"10.0.0.0/24", "10.0.0.64/26", 64},
		{"10.0.0.0/16", "", 65534},
		{"10.0.0.0/8", "", 1<<24 - 2},
		{"fd00::/126", "", 3},
		{"fd00::/120", "", 255},
		{"fd00::/64", "", math.MaxUint64}, // exactly 2^64 - 1
		{"fd00::/48", "", math.MaxUint64}, // saturated
		{"fd00::/64", "fd00::/96", 1<<32 - 1},
	}
	for _, tt := range tests {
		if got := allocTestNew(t, tt.pool, tt.rng).Size(); got != tt.want {
			t.Errorf("Size(%s, %s) = %d, want %d", tt.pool, tt.rng, got, tt.want)
		}
	}
}

// TestAllocatorIPv6Dense allocates many addresses of a /64 and checks that
// they are stored as a single run.
func TestAllocatorIPv6Dense(t *testing.T) {
	const n = 100_000
	a := allocTestNew(t, "fd00::/64", "")
	var last netip.Addr
	for range n {
		last = allocTestNext(t, a)
	}
	if want := netip.MustParseAddr("fd00::1:86a0"); last != want {
		t.Errorf("address #%d = %s, want %s", n, last, want)
	}
	if a.Used() != n || a.taken.Runs() != 1 {
		t.Errorf("Used() = %d, Runs() = %d; want %d and 1", a.Used(), a.taken.Runs(), n)
	}
}

// TestAllocatorRestore rebuilds an allocator from its taken addresses and
// cursor and checks that it continues exactly where the original would.
func TestAllocatorRestore(t *testing.T) {
	orig := allocTestNew(t, "10.0.0.0/24", "10.0.0.0/25")
	var held []netip.Addr
	for range 40 {
		held = append(held, allocTestNext(t, orig))
	}
	for i := 0; i < len(held); i += 3 {
		orig.Release(held[i])
	}
	aux := netip.MustParseAddr("10.0.0.200") // outside the range
	if err := orig.Reserve(aux); err != nil {
		t.Fatal(err)
	}

	restored := allocTestNew(t, "10.0.0.0/24", "10.0.0.0/25")
	for i := len(held) - 1; i >= 0; i-- { // any order
		if orig.Taken(held[i]) {
			if err := restored.Reserve(held[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := restored.Reserve(aux); err != nil {
		t.Fatal(err)
	}
	restored.SetCursor(orig.Cursor())

	if restored.Used() != orig.Used() {
		t.Fatalf("restored Used() = %d, want %d", restored.Used(), orig.Used())
	}
	for range orig.Size() + 1 { // bounded: a broken allocator could hand out forever
		want, wantErr := orig.Next()
		got, gotErr := restored.Next()
		if got != want || (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("restored Next = %s, %v; original %s, %v", got, gotErr, want, wantErr)
		}
		if wantErr != nil {
			return
		}
	}
	t.Fatalf("Next handed out more than the %d usable addresses", orig.Size())
}
