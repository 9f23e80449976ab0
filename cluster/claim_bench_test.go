package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClaimParallel: address claims per second against a real etcd on
// loopback, from many goroutines of three hosts at once, each on addresses
// of its own (no collisions): the etcd part of a cluster RequestAddress.
func BenchmarkClaimParallel(b *testing.B) {
	ctx := context.Background()
	clients := make([]*Client, 3)
	for i := range clients {
		c, err := Open(Config{Endpoints: shared.Endpoints(), HostID: fmt.Sprintf("bench%d", i),
			Advertise: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), Prefix: fmt.Sprintf("/bench/%d/", time.Now().UnixNano()), Log: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, _, err := c.Join(ctx, PoolSpec{Name: "bench", Subnet: netip.MustParsePrefix("10.0.0.0/8")}); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	var next atomic.Uint32
	var which atomic.Uint32
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[which.Add(1)%3]
		for pb.Next() {
			n := next.Add(1)
			a := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			if _, err := c.Claim(ctx, "bench", a, KindEndpoint); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
