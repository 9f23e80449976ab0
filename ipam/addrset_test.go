package ipam

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// addrsetTestRuns renders the runs as "first-last" strings.
func addrsetTestRuns(s *AddrSet) []string {
	out := []string{}
	for _, r := range s.runs {
		out = append(out, r.First.String()+"-"+r.Last.String())
	}
	return out
}

// addrsetTestCheck verifies the representation invariants: every run is
// ordered, runs are sorted, and no two runs overlap or touch.
func addrsetTestCheck(t *testing.T, s *AddrSet) {
	t.Helper()
	var n uint64
	for i, r := range s.runs {
		if !r.First.IsValid() || r.Last.Less(r.First) {
			t.Fatalf("run %d is malformed: %v", i, addrsetTestRuns(s))
		}
		if i > 0 && s.runs[i-1].Last.Next().Compare(r.First) >= 0 {
			t.Fatalf("runs %d and %d overlap or touch: %v", i-1, i, addrsetTestRuns(s))
		}
		n += addrSpan(r.First, r.Last)
	}
	if n != s.Len() {
		t.Fatalf("Len() = %d, runs hold %d", s.Len(), n)
	}
}

func TestAddrSetAddRemove(t *testing.T) {
	type step struct {
		remove bool
		addr   string
		want   bool
	}
	add := func(a string, want bool) step { return step{addr: a, want: want} }
	del := func(a string, want bool) step { return step{remove: true, addr: a, want: want} }

	tests := []struct {
		name     string
		steps    []step
		wantRuns []string
		wantLen  uint64
	}{
		{"empty", nil, []string{}, 0},
		{"single", []step{add("10.0.0.1", true)}, []string{"10.0.0.1-10.0.0.1"}, 1},
		{"duplicate add", []step{add("10.0.0.1", true), add("10.0.0.1", false)}, []string{"10.0.0.1-10.0.0.1"}, 1},
		{"merge right", []step{add("10.0.0.2", true), add("10.0.0.1", true)}, []string{"10.0.0.1-10.0.0.2"}, 2},
		{"merge left", []step{add("10.0.0.1", true), add("10.0.0.2", true)}, []string{"10.0.0.1-10.0.0.2"}, 2},
		{"merge both", []step{add("10.0.0.1", true), add("10.0.0.3", true), add("10.0.0.2", true)},
			[]string{"10.0.0.1-10.0.0.3"}, 3},
		{"isolated stays apart", []step{add("10.0.0.5", true), add("10.0.0.1", true), add("10.0.0.3", true)},
			[]string{"10.0.0.1-10.0.0.1", "10.0.0.3-10.0.0.3", "10.0.0.5-10.0.0.5"}, 3},
		{"merge across octet", []step{add("10.0.0.255", true), add("10.0.1.0", true)}, []string{"10.0.0.255-10.0.1.0"}, 2},
		{"remove absent", []step{add("10.0.0.1", true), del("10.0.0.2", false), del("10.0.0.0", false)},
			[]string{"10.0.0.1-10.0.0.1"}, 1},
		{"remove singleton", []step{add("10.0.0.1", true), del("10.0.0.1", true), del("10.0.0.1", false)}, []string{}, 0},
		{"remove first", []step{add("10.0.0.1", true), add("10.0.0.2", true), add("10.0.0.3", true), del("10.0.0.1", true)},
			[]string{"10.0.0.2-10.0.0.3"}, 2},
		{"remove last", []step{add("10.0.0.1", true), add("10.0.0.2", true), add("10.0.0.3", true), del("10.0.0.3", true)},
			[]string{"10.0.0.1-10.0.0.2"}, 2},
		{"remove middle splits", []step{add("10.0.0.1", true), add("10.0.0.2", true), add("10.0.0.3", true), add("10.0.0.9", true), del("10.0.0.2", true)},
			[]string{"10.0.0.1-10.0.0.1", "10.0.0.3-10.0.0.3", "10.0.0.9-10.0.0.9"}, 3},
		{"ipv6 merge", []step{add("fd00::1", true), add("fd00::3", true), add("fd00::2", true)}, []string{"fd00::1-fd00::3"}, 3},
		{"ipv6 merge across 64-bit half", []step{add("fd00::ffff:ffff:ffff:ffff", true), add("fd00:0:0:1::", true)},
			[]string{"fd00::ffff:ffff:ffff:ffff-fd00:0:0:1::"}, 2},
		{"ipv4 top of family", []step{add("255.255.255.255", true), add("255.255.255.254", true), del("255.255.255.255", true)},
			[]string{"255.255.255.254-255.255.255.254"}, 1},
		{"families never merge", []step{add("255.255.255.255", true), add("::", true)},
			[]string{"255.255.255.255-255.255.255.255", "::-::"}, 2},
		{"ipv6 top of family", []step{add("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true), add("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", true)},
			[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s AddrSet
			for i, st := range tt.steps {
				a := netip.MustParseAddr(st.addr)
				var got bool
				if st.remove {
					got = s.Remove(a)
				} else {
					got = s.Add(a)
				}
				if got != st.want {
					t.Fatalf("step %d (remove=%v %s) = %v, want %v", i, st.remove, st.addr, got, st.want)
				}
				addrsetTestCheck(t, &s)
			}
			if got := addrsetTestRuns(&s); !slices.Equal(got, tt.wantRuns) {
				t.Errorf("runs = %v, want %v", got, tt.wantRuns)
			}
			if s.Runs() != len(tt.wantRuns) {
				t.Errorf("Runs() = %d, want %d", s.Runs(), len(tt.wantRuns))
			}
			if s.Len() != tt.wantLen {
				t.Errorf("Len() = %d, want %d", s.Len(), tt.wantLen)
			}
		})
	}
}

func TestAddrSetInvalidAddrIsNeverMember(t *testing.T) {
	var s AddrSet
	if s.Add(netip.Addr{}) {
		t.Error("Add(zero Addr) = true, want false")
	}
	if s.Contains(netip.Addr{}) || s.Remove(netip.Addr{}) || s.Len() != 0 {
		t.Error("zero Addr became a member")
	}
}

func TestAddrSetContains(t *testing.T) {
	var s AddrSet
	for _, a := range []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.8"} {
		s.Add(netip.MustParseAddr(a))
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"10.0.0.1", false}, {"10.0.0.2", true}, {"10.0.0.3", true}, {"10.0.0.4", true},
		{"10.0.0.5", false}, {"10.0.0.7", false}, {"10.0.0.8", true}, {"10.0.0.9", false},
		{"fd00::2", false},
	}
	for _, tt := range tests {
		if got := s.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestAddrSetFirstAbsent(t *testing.T) {
	var s AddrSet
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.9", "10.0.0.10"} {
		s.Add(netip.MustParseAddr(a))
	}
	tests := []struct {
		from, to string
		want     string // "" means none
	}{
		{"10.0.0.0", "10.0.0.255", "10.0.0.0"},
		{"10.0.0.1", "10.0.0.255", "10.0.0.4"},
		{"10.0.0.2", "10.0.0.3", ""},
		{"10.0.0.2", "10.0.0.4", "10.0.0.4"},
		{"10.0.0.5", "10.0.0.5", ""},
		{"10.0.0.5", "10.0.0.6", "10.0.0.6"},
		{"10.0.0.9", "10.0.0.10", ""},
		{"10.0.0.9", "10.0.0.11", "10.0.0.11"},
		{"10.0.0.20", "10.0.0.10", ""}, // empty interval
	}
	for _, tt := range tests {
		got, ok := s.firstAbsent(netip.MustParseAddr(tt.from), netip.MustParseAddr(tt.to))
		if tt.want == "" {
			if ok {
				t.Errorf("firstAbsent(%s, %s) = %s, want none", tt.from, tt.to, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tt.want) {
			t.Errorf("firstAbsent(%s, %s) = %s, %v; want %s", tt.from, tt.to, got, ok, tt.want)
		}
	}

	var top AddrSet
	top.Add(netip.MustParseAddr("255.255.255.255"))
	if got, ok := top.firstAbsent(netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("255.255.255.255")); ok {
		t.Errorf("firstAbsent at the top of IPv4 = %s, want none", got)
	}
}

// TestAddrSetMatchesMap drives random operations on a small address space
// and compares with a map after each one.
func TestAddrSetMatchesMap(t *testing.T) {
	for _, base := range []string{"10.0.0.0", "fd00::", "255.255.255.192", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffc0"} {
		t.Run(base, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(1, 2))
			space := make([]netip.Addr, 64)
			space[0] = netip.MustParseAddr(base)
			for i := 1; i < len(space); i++ {
				space[i] = space[i-1].Next()
			}
			var s AddrSet
			model := map[netip.Addr]bool{}
			for i := 0; i < 5000; i++ {
				a := space[rnd.IntN(len(space))]
				if rnd.IntN(2) == 0 {
					if got, want := s.Add(a), !model[a]; got != want {
						t.Fatalf("op %d: Add(%s) = %v, want %v", i, a, got, want)
					}
					model[a] = true
				} else {
					if got, want := s.Remove(a), model[a]; got != want {
						t.Fatalf("op %d: Remove(%s) = %v, want %v", i, a, got, want)
					}
					delete(model, a)
				}
				addrsetTestCheck(t, &s)
				if s.Len() != uint64(len(model)) {
					t.Fatalf("op %d: Len() = %d, want %d", i, s.Len(), len(model))
				}
				for _, b := range space {
					if s.Contains(b) != model[b] {
						t.Fatalf("op %d: Contains(%s) = %v, want %v", i, b, s.Contains(b), model[b])
					}
				}
			}
		})
	}
}

func TestAddrSpan(t *testing.T) {
	tests := []struct {
		first, last string
		want        uint64
	}{
		{"10.0.0.1", "10.0.0.1", 1},
		{"10.0.0.1", "10.0.0.254", 254},
		{"10.0.0.2", "10.0.0.1", 0},
		{"0.0.0.0", "255.255.255.255", 1 << 32},
		{"fd00::1", "fd00::ffff:ffff:ffff:ffff", math.MaxUint64},
		{"fd00::", "fd00::ffff:ffff:ffff:fffe", math.MaxUint64},
		{"fd00::", "fd00::ffff:ffff:ffff:ffff", math.MaxUint64}, // 2^64 saturates
		{"fd00::", "fd00::1:0:0:0:0", math.MaxUint64},
		{"fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::", 2}, // borrow across the halves
	}
	for _, tt := range tests {
		if got := addrSpan(netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)); got != tt.want {
			t.Errorf("addrSpan(%s, %s) = %d, want %d", tt.first, tt.last, got, tt.want)
		}
	}
}

func TestAddrPrefixLast(t *testing.T) {
	tests := []struct{ prefix, want string }{
		{"10.0.0.0/24", "10.0.0.255"},
		{"10.0.0.0/16", "10.0.255.255"},
		{"10.0.0.128/25", "10.0.0.255"},
		{"10.0.0.4/32", "10.0.0.4"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"10.0.0.0/13", "10.7.255.255"},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff"},
		{"fd00::/126", "fd00::3"},
		{"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tt := range tests {
		if got := addrPrefixLast(netip.MustParsePrefix(tt.prefix)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("addrPrefixLast(%s) = %s, want %s", tt.prefix, got, tt.want)
		}
	}
}

// FuzzAddrSet applies fuzzed Add/Remove sequences to a 64-address window
// (one per family, at the bottom and the top) and compares with a map.
func FuzzAddrSet(f *testing.F) {
	f.Add(uint8(0), []byte{1, 3, 2, 0x83, 0x82})
	f.Add(uint8(3), []byte{63, 62, 0xbf, 61, 0xbe})
	f.Fuzz(func(t *testing.T, window uint8, ops []byte) {
		bases := []string{"10.0.0.0", "255.255.255.192", "fd00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffc0"}
		base := netip.MustParseAddr(bases[int(window)%len(bases)])
		space := []netip.Addr{base}
		for len(space) < 64 {
			space = append(space, space[len(space)-1].Next())
		}
		var s AddrSet
		model := map[netip.Addr]bool{}
		for _, op := range ops {
			a := space[op%64]
			if op&0x80 == 0 {
				if got := s.Add(a); got == model[a] {
					t.Fatalf("Add(%s) = %v with model %v", a, got, model[a])
				}
				model[a] = true
			} else {
				if got := s.Remove(a); got != model[a] {
					t.Fatalf("Remove(%s) = %v with model %v", a, got, model[a])
				}
				delete(model, a)
			}
			addrsetTestCheck(t, &s)
		}
		for _, a := range space {
			if s.Contains(a) != model[a] {
				t.Fatalf("Contains(%s) = %v, model %v", a, s.Contains(a), model[a])
			}
		}
	})
}
