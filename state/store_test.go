package state

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mynet/mynet/timing"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "mynet.db")
	s, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestSecondOpenFailsFast(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("second open took %v", time.Since(start))
	}
}

func TestRecordsSurviveReopen(t *testing.T) {
	s, path := openTemp(t)
	pool := Pool{ID: "mynet/10.1.0.0/24", Pool: netip.MustParsePrefix("10.1.0.0/24"), Created: time.Now().UTC()}
	a := netip.MustParseAddr("10.1.0.7")
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutPool(pool); err != nil {
			return err
		}
		if err := tx.PutAddress(pool.ID, a, Address{Kind: KindEndpoint}); err != nil {
			return err
		}
		if err := tx.PutCursor(pool.ID, a); err != nil {
			return err
		}
		return tx.PutNetwork(Network{ID: "n1", Backend: "bridge", Bridge: "br-n1", ICC: true,
			IPv4: []Subnet{{Pool: pool.Pool, Gateway: netip.MustParsePrefix("10.1.0.1/24")}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	err = s2.View(func(tx *Tx) error {
		p, ok, err := tx.Pool(pool.ID)
		if err != nil || !ok || p.Pool != pool.Pool {
			return fmt.Errorf("pool after reopen: %+v %v %v", p, ok, err)
		}
		var got []netip.Addr
		if err := tx.Addresses(pool.ID, func(x netip.Addr, rec Address) error {
			if rec.Kind != KindEndpoint {
				return fmt.Errorf("kind %q", rec.Kind)
			}
			got = append(got, x)
			return nil
		}); err != nil {
			return err
		}
		if len(got) != 1 || got[0] != a {
			return fmt.Errorf("addresses after reopen: %v", got)
		}
		if c, ok := tx.Cursor(pool.ID); !ok || c != a {
			return fmt.Errorf("cursor after reopen: %v %v", c, ok)
		}
		n, ok, err := tx.Network("n1")
		if err != nil || !ok || n.Bridge != "br-n1" || n.IPv4[0].Gateway.Addr().String() != "10.1.0.1" {
			return fmt.Errorf("network after reopen: %+v %v %v", n, ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeletePoolRemovesAddressesAndIsIdempotent(t *testing.T) {
	s, _ := openTemp(t)
	id := "p"
	must(t, s.Update(func(tx *Tx) error {
		if err := tx.PutPool(Pool{ID: id}); err != nil {
			return err
		}
		return tx.PutAddress(id, netip.MustParseAddr("fd00::5"), Address{})
	}))
	for i := 0; i < 2; i++ {
		must(t, s.Update(func(tx *Tx) error { return tx.DeletePool(id) }))
	}
	must(t, s.View(func(tx *Tx) error {
		if _, ok, _ := tx.Pool(id); ok {
			return errors.New("pool still there")
		}
		n := 0
		tx.Addresses(id, func(netip.Addr, Address) error { n++; return nil })
		if n != 0 {
			return fmt.Errorf("%d addresses left", n)
		}
		return nil
	}))
}

// A refused write inside a group must not take the others down with it.
func TestGroupedWriteFailureIsIsolated(t *testing.T) {
	s, _ := openTemp(t)
	must(t, s.Update(func(tx *Tx) error { return tx.PutPool(Pool{ID: "p"}) }))
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(func(tx *Tx) error {
				if i%8 == 0 {
					return fmt.Errorf("refused %d", i)
				}
				return tx.PutAddress("p", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Address{})
			})
		}()
	}
	wg.Wait()
	count := 0
	must(t, s.View(func(tx *Tx) error {
		return tx.Addresses("p", func(netip.Addr, Address) error { count++; return nil })
	}))
	for i, err := range errs {
		if (i%8 == 0) != (err != nil) {
			t.Errorf("write %d: err=%v", i, err)
		}
	}
	if count != 64-8 {
		t.Fatalf("stored %d addresses, want 56", count)
	}
}

func TestUpdateAfterCloseFails(t *testing.T) {
	s, _ := openTemp(t)
	s.Close()
	if err := s.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
}

func TestReadOnlyOpenSeesData(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Update(func(tx *Tx) error { return tx.PutNetwork(Network{ID: "x"}) }))
	s.Close()
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	must(t, ro.View(func(tx *Tx) error {
		ns, err := tx.Networks()
		if err != nil || len(ns) != 1 {
			return fmt.Errorf("networks %v %v", ns, err)
		}
		return nil
	}))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkConcurrentDurableWrites measures durable (fsynced) allocations per
// second with 32 writers, the group commit's reason to exist.
func BenchmarkConcurrentDurableWrites(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "b.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(func(tx *Tx) error { return tx.PutPool(Pool{ID: "p"}) }); err != nil {
		b.Fatal(err)
	}
	var n uint32
	var mu sync.Mutex
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			a := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			mu.Unlock()
			if err := s.Update(func(tx *Tx) error { return tx.PutAddress("p", a, Address{}) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

func TestInstanceIDIsStablePerFile(t *testing.T) {
	s, path := openTemp(t)
	id := s.InstanceID()
	if len(id) != 12 {
		t.Fatalf("instance id %q", id)
	}
	s.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.InstanceID() != id {
		t.Fatalf("id changed across reopen: %s -> %s", id, s2.InstanceID())
	}
	other, _ := openTemp(t)
	if other.InstanceID() == id {
		t.Fatal("two state files share an instance id")
	}
}

// Update and View report to timing (a real write with its fsync, a real read).
func TestUpdateAndViewReportToTiming(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "spent.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := timing.Cumulative().Bbolt
	if err := s.Update(func(tx *Tx) error { return tx.PutNetwork(Network{ID: "n"}) }); err != nil {
		t.Fatal(err)
	}
	afterUpdate := timing.Cumulative().Bbolt
	s.View(func(tx *Tx) error { _, _, err := tx.Network("n"); return err })
	if afterUpdate <= before || timing.Cumulative().Bbolt <= afterUpdate {
		t.Fatalf("Spent %v -> %v (update) -> %v (view)", before, afterUpdate, timing.Cumulative().Bbolt)
	}
}
