package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

type testEnv struct {
	t     *testing.T
	path  string
	store *state.Store
	d     *Driver
	host  []netip.Prefix
}

func newEnv(t *testing.T, ranges string) *testEnv {
	t.Helper()
	e := &testEnv{t: t, path: filepath.Join(t.TempDir(), "ipam.db")}
	e.open(ranges)
	t.Cleanup(func() { e.store.Close() })
	return e
}

func (e *testEnv) open(ranges string) {
	e.t.Helper()
	s, err := state.Open(e.path, state.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	rs, err := ParseRanges(ranges)
	if err != nil {
		e.t.Fatal(err)
	}
	d, err := New(Config{Store: s, Ranges: rs, Host: func() ([]netip.Prefix, error) { return e.host, nil }})
	if err != nil {
		e.t.Fatal(err)
	}
	e.store, e.d = s, d
}

// restart simulates a plugin restart on the same state file.
func (e *testEnv) restart(ranges string) {
	e.t.Helper()
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open(ranges)
}

func (e *testEnv) pool(pool, sub string, v6 bool) PoolResponse {
	e.t.Helper()
	r, err := e.d.RequestPool(PoolRequest{AddressSpace: LocalSpace, Pool: pool, SubPool: sub, V6: v6})
	if err != nil {
		e.t.Fatalf("RequestPool(%q,%q): %v", pool, sub, err)
	}
	return r
}

func (e *testEnv) addr(poolID, want string, gw bool) string {
	e.t.Helper()
	var opts map[string]string
	if gw {
		opts = map[string]string{optRequestType: gatewayType}
	}
	r, err := e.d.RequestAddress(AddressRequest{PoolID: poolID, Address: want, Options: opts})
	if err != nil {
		e.t.Fatalf("RequestAddress(%q): %v", want, err)
	}
	return r.Address
}

func TestExplicitPoolWithRangeGatewayAux(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("10.91.0.0/24", "10.91.0.128/25", false)
	if p.PoolID != "LocalDefault/10.91.0.0/24/10.91.0.128/25" || p.Pool != "10.91.0.0/24" {
		t.Fatalf("pool response %+v", p)
	}
	if gw := e.addr(p.PoolID, "", true); gw != "10.91.0.128/24" {
		t.Fatalf("gateway without --gateway: %s, want first of range 10.91.0.128/24", gw)
	}
	if aux := e.addr(p.PoolID, "10.91.0.5", false); aux != "10.91.0.5/24" {
		t.Fatalf("aux outside range: %s", aux)
	}
	got := e.addr(p.PoolID, "", false)
	a := netip.MustParsePrefix(got)
	if !netip.MustParsePrefix("10.91.0.128/25").Contains(a.Addr()) || a.Bits() != 24 {
		t.Fatalf("address %s not in range with pool prefix", got)
	}
	_, err := e.d.RequestAddress(AddressRequest{PoolID: p.PoolID, Address: "10.91.0.5"})
	if err == nil || !strings.Contains(err.Error(), "10.91.0.5") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("taken address: %v", err)
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("10.92.0.0/24", "", false)
	pool := func(r PoolRequest) func() error {
		return func() error { _, err := e.d.RequestPool(r); return err }
	}
	addr := func(r AddressRequest) func() error {
		return func() error { _, err := e.d.RequestAddress(r); return err }
	}
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"not network form", pool(PoolRequest{Pool: "10.93.0.1/24"}), "10.93.0.0/24"},
		{"not a prefix", pool(PoolRequest{Pool: "banana"}), "banana"},
		{"family mismatch", pool(PoolRequest{Pool: "fd00::/64"}), "IPv4"},
		{"overlap", pool(PoolRequest{Pool: "10.92.0.0/16"}), "overlaps"},
		{"range outside", pool(PoolRequest{Pool: "10.94.0.0/24", SubPool: "10.95.0.0/25"}), "not inside"},
		{"range without pool", pool(PoolRequest{SubPool: "10.95.0.0/25"}), "without a subnet"},
		{"too small", pool(PoolRequest{Pool: "10.96.0.0/31"}), "too small"},
		{"unknown pool", addr(AddressRequest{PoolID: "nope"}), "unknown pool"},
		{"outside pool", addr(AddressRequest{PoolID: p.PoolID, Address: "10.99.0.1"}), "not inside"},
		{"wrong family", addr(AddressRequest{PoolID: p.PoolID, Address: "fd00::1"}), "IPv4"},
		{"broadcast", addr(AddressRequest{PoolID: p.PoolID, Address: "10.92.0.255"}), "broadcast"},
		{"garbage address", addr(AddressRequest{PoolID: p.PoolID, Address: "x.y"}), "x.y"},
	}
	for _, c := range cases {
		err := c.call()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
		if c.name != "unknown pool" && !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("%s: %v is not protocol.ErrBadRequest", c.name, err)
		}
	}
	if u := e.d.Usage(); len(u) != 1 || u[0].Used != 0 {
		t.Fatalf("state changed by bad requests: %+v", u)
	}
}

func TestAutomaticPoolsAreDistinctAndAvoidHost(t *testing.T) {
	e := newEnv(t, "10.208.0.0/22:24,fd00:aa::/62:64")
	e.host = []netip.Prefix{netip.MustParsePrefix("10.208.1.0/24")} // a host route
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		p := e.pool("", "", false)
		if seen[p.Pool] || p.Pool == "10.208.1.0/24" {
			t.Fatalf("pool %d: %s (seen %v)", i, p.Pool, seen)
		}
		seen[p.Pool] = true
	}
	_, err := e.d.RequestPool(PoolRequest{})
	if err == nil || !strings.Contains(err.Error(), "no free pool") {
		t.Fatalf("exhausted ranges: %v", err)
	}
	v6 := e.pool("", "", true)
	if !netip.MustParsePrefix("fd00:aa::/62").Contains(netip.MustParsePrefix(v6.Pool).Addr()) {
		t.Fatalf("v6 pool %s", v6.Pool)
	}
}

// Docker re-asks after refusing a pool while it still holds it; after a
// release, the next request must still move on rather than repeat.
func TestAutomaticPoolNotRepeatedAfterRelease(t *testing.T) {
	e := newEnv(t, "10.208.0.0/20:24")
	a := e.pool("", "", false)
	if err := e.d.ReleasePool(a.PoolID); err != nil {
		t.Fatal(err)
	}
	b := e.pool("", "", false)
	if a.Pool == b.Pool {
		t.Fatalf("same pool %s twice in a row", a.Pool)
	}
	e.restart("10.208.0.0/20:24")
	c := e.pool("", "", false)
	if c.Pool == b.Pool || c.Pool == a.Pool {
		t.Fatalf("after restart got %s again (had %s, %s)", c.Pool, a.Pool, b.Pool)
	}
}

func TestRestartKeepsEverythingAndNeverDoublesAnAddress(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("10.97.0.0/24", "", false)
	gw := e.addr(p.PoolID, "", true)
	held := map[string]bool{gw: true}
	for i := 0; i < 5; i++ {
		held[e.addr(p.PoolID, "", false)] = true
	}
	released := e.addr(p.PoolID, "", false)
	if err := e.d.ReleaseAddress(p.PoolID, strings.Split(released, "/")[0]); err != nil {
		t.Fatal(err)
	}
	e.restart(DefaultRanges)
	for i := 0; i < 5; i++ {
		a := e.addr(p.PoolID, "", false)
		if held[a] {
			t.Fatalf("address %s handed out twice across a restart", a)
		}
		if a == released {
			t.Fatalf("just-released %s handed out while others are free", a)
		}
		held[a] = true
	}
	// the pool id still works, and releases are idempotent
	for i := 0; i < 2; i++ {
		if err := e.d.ReleasePool(p.PoolID); err != nil {
			t.Fatal(err)
		}
		if err := e.d.ReleaseAddress(p.PoolID, "10.97.0.9"); err != nil {
			t.Fatal(err)
		}
	}
	e.pool("10.97.0.0/24", "", false) // released pool can be taken again
}

func TestIPv6Slash64(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("fd00:92::/64", "", true)
	if gw := e.addr(p.PoolID, "", true); gw != "fd00:92::1/64" {
		t.Fatalf("v6 gateway %s", gw)
	}
	for i := 0; i < 100; i++ {
		e.addr(p.PoolID, "", false)
	}
	if u := e.d.Usage(); u[0].Used != 101 {
		t.Fatalf("used %d", u[0].Used)
	}
}

// allDistinct makes n calls of request at once and fails t unless every
// one succeeds with a value no other call got.
func allDistinct(t *testing.T, what string, n int, request func() (string, error)) {
	t.Helper()
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = request() })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, v := range got {
		if errs[i] != nil {
			t.Fatalf("%s request %d: %v", what, i, errs[i])
		}
		if seen[v] {
			t.Fatalf("%s %s handed out twice", what, v)
		}
		seen[v] = true
	}
}

func TestConcurrentRequestsAreDistinctAndDurable(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	p := e.pool("10.98.0.0/22", "", false)
	const n = 200
	allDistinct(t, "address", n, func() (string, error) {
		r, err := e.d.RequestAddress(AddressRequest{PoolID: p.PoolID})
		return r.Address, err
	})
	e.restart(DefaultRanges)
	if u := e.d.Usage(); u[0].Used != n {
		t.Fatalf("after restart %d addresses, want %d", u[0].Used, n)
	}
}

func TestParseRanges(t *testing.T) {
	good := []string{"10.208.0.0/12:24", "10.0.0.0/8:16,fd00::/48:64", " 192.168.0.0/16:20 "}
	for _, s := range good {
		if _, err := ParseRanges(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := map[string]string{
		"":                             "at least one",
		"10.0.0.0/8":                   "BASE/LEN:SIZE",
		"10.0.0.1/8:16":                "network form",
		"10.0.0.0/8:4":                 "from 8 to 32",
		"10.0.0.0/8:32":                "no host",
		"10.0.0.0/8:16,10.1.0.0/16:24": "overlap",
	}
	for s, want := range bad {
		_, err := ParseRanges(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", s, err, want)
		}
	}
}

func BenchmarkRestartLoad(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("addresses=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "b.db")
			s, _ := state.Open(path, state.Options{})
			rs, _ := ParseRanges(DefaultRanges)
			d, _ := New(Config{Store: s, Ranges: rs, Host: func() ([]netip.Prefix, error) { return nil, nil }})
			p, _ := d.RequestPool(PoolRequest{Pool: "10.0.0.0/8"})
			s.Update(func(tx *state.Tx) error {
				for i := 1; i <= n; i++ {
					tx.PutAddress(p.PoolID, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), state.Address{})
				}
				return nil
			})
			s.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := state.Open(path, state.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := New(Config{Store: s, Ranges: rs}); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

func BenchmarkDurableRequestAddressParallel(b *testing.B) {
	s, _ := state.Open(filepath.Join(b.TempDir(), "b.db"), state.Options{})
	defer s.Close()
	rs, _ := ParseRanges(DefaultRanges)
	d, _ := New(Config{Store: s, Ranges: rs, Host: func() ([]netip.Prefix, error) { return nil, nil }})
	p, _ := d.RequestPool(PoolRequest{Pool: "10.0.0.0/8"})
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := d.RequestAddress(AddressRequest{PoolID: p.PoolID}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}

// Requests for automatic pools that arrive together must each get a pool of
// their own, never an "overlaps" refusal for a subnet the user did not give.
func TestConcurrentAutomaticPoolsAllSucceed(t *testing.T) {
	for round := 0; round < 20; round++ {
		e := newEnv(t, "10.208.0.0/16:24")
		const n = 16
		var arrived sync.WaitGroup
		arrived.Add(n)
		e.d.host = func() ([]netip.Prefix, error) {
			// Hold every request here until all have come, so they race for the pick.
			arrived.Done()
			arrived.Wait()
			return nil, nil
		}
		allDistinct(t, fmt.Sprintf("round %d: automatic pool", round), n, func() (string, error) {
			r, err := e.d.RequestPool(PoolRequest{AddressSpace: LocalSpace})
			return r.Pool, err
		})
	}
}
