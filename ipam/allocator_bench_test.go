package ipam

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// allocBenchFill takes `fill` addresses sequentially, then releases random
// ones until `keep` remain, leaving the scattered holes a long-lived
// network has. It returns the held addresses.
func allocBenchFill(b *testing.B, a *Allocator, fill, keep int, rnd *rand.Rand) []netip.Addr {
	b.Helper()
	held := make([]netip.Addr, 0, fill)
	for range fill {
		addr, err := a.Next()
		if err != nil {
			b.Fatal(err)
		}
		held = append(held, addr)
	}
	rnd.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
	for _, addr := range held[keep:] {
		a.Release(addr)
	}
	return held[:keep]
}

// allocBenchChurn measures one Next plus one Release of a random held
// address, so the fill level stays constant.
func allocBenchChurn(b *testing.B, a *Allocator, held []netip.Addr, rnd *rand.Rand) {
	b.ReportAllocs()
	for b.Loop() {
		addr, err := a.Next()
		if err != nil {
			b.Fatal(err)
		}
		i := rnd.IntN(len(held))
		a.Release(held[i])
		held[i] = addr
	}
	b.ReportMetric(float64(a.taken.Runs()), "runs")
}

func BenchmarkNextIPv4_16_1pct(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 1))
	a := allocTestNew(b, "10.0.0.0/16", "")
	size := int(a.Size())
	held := allocBenchFill(b, a, size/10, size/100, rnd)
	allocBenchChurn(b, a, held, rnd)
}

func BenchmarkNextIPv4_16_99pct(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 1))
	a := allocTestNew(b, "10.0.0.0/16", "")
	size := int(a.Size())
	held := allocBenchFill(b, a, size, size*99/100, rnd)
	allocBenchChurn(b, a, held, rnd)
}

func BenchmarkNextIPv6_64(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 1))
	a := allocTestNew(b, "fd00::/64", "")
	held := allocBenchFill(b, a, 20_000, 10_000, rnd)
	allocBenchChurn(b, a, held, rnd)
}

// BenchmarkReserveLoad10k measures a restart: Reserve of 10k stored
// addresses (scattered over a /16) into a fresh allocator.
func BenchmarkReserveLoad10k(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 1))
	setup := allocTestNew(b, "10.0.0.0/16", "")
	stored := allocBenchFill(b, setup, 20_000, 10_000, rnd) // every other address, roughly
	sorted := slices.SortedFunc(slices.Values(stored), netip.Addr.Compare)

	for _, order := range []struct {
		name  string
		addrs []netip.Addr
	}{{"sorted", sorted}, {"shuffled", stored}} {
		b.Run(order.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a, err := NewAllocator(setup.pool, setup.rng)
				if err != nil {
					b.Fatal(err)
				}
				for _, addr := range order.addrs {
					if err := a.Reserve(addr); err != nil {
						b.Fatal(err)
					}
				}
				a.SetCursor(setup.Cursor())
			}
		})
	}
}
