package ipam

import (
	"sync/atomic"
	"testing"

	"github.com/mynet/mynet/cluster"
)

// BenchmarkClusterRequestAddress: durable cluster allocations per second
// (etcd claim, then the bbolt record with its fsync) from three hosts' IPAMs
// at once, 16 requests in flight per CPU.
func BenchmarkClusterRequestAddress(b *testing.B) {
	srv := sharedEtcd(b)
	hosts := make([]*chost, 3)
	ids := make([]string, 3)
	for i := range hosts {
		hosts[i] = newClusterHost(b, srv, i+1, cluster.Config{})
		subnet := ""
		if i == 0 {
			subnet = "10.96.0.0/12"
		}
		r, err := hosts[i].pool("bench", subnet)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = r.PoolID
	}
	var which atomic.Uint32
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := which.Add(1) % 3
		for pb.Next() {
			if _, err := hosts[i].addr(ids[i], "", false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}
