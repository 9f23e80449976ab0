package reconcile

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/vishvananda/netns"
)

// One background run with 200 bridge networks and 2,000 endpoints that
// Docker's view agrees with (nothing to repair: the cost every interval),
// and what it costs protocol calls made meanwhile: the p50 and worst
// CreateEndpoint + DeleteEndpoint pair while runs go on, against the same
// pairs with no run.
func BenchmarkLoopOnce200Networks2000Endpoints(b *testing.B) {
	inNetns(b, func(e *env) {
		var nets []dockerNet
		for i := 0; i < 200; i++ {
			id := fmt.Sprintf("%012x%052d", i+1, 0)
			subnet := fmt.Sprintf("10.%d.%d.0/24", 100+i/200, i%200)
			if err := e.net.CreateNetwork(&api.CreateNetworkRequest{NetworkID: id,
				Options:  map[string]any{"com.docker.network.generic": map[string]any{}},
				IPv4Data: []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: subnet, Gateway: fmt.Sprintf("10.%d.%d.1/24", 100+i/200, i%200)}}}); err != nil {
				b.Fatal(err)
			}
			n := dockerNet{ID: id, Name: fmt.Sprintf("n%d", i), Driver: "mynet", Containers: map[string]dockerEndpoint{}}
			n.IPAM.Config = []dockerPool{{Subnet: subnet}}
			for j := 0; j < 10; j++ {
				ep := fmt.Sprintf("%06x%06x%052d", i+1, j+1, 0)
				addr := fmt.Sprintf("10.%d.%d.%d/24", 100+i/200, i%200, j+2)
				if _, err := e.net.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: id, EndpointID: ep,
					Interface: &api.EndpointInterface{Address: addr}, Options: map[string]any{}}); err != nil {
					b.Fatal(err)
				}
				n.Containers[ep] = dockerEndpoint{Name: ep[:12], EndpointID: ep, IPv4Address: addr}
			}
			nets = append(nets, n)
		}
		fake := newFakeDocker(e.t, dockerSock(b), nets...)
		l := e.loop(fake.sock, time.Hour)
		ns, err := netns.Get()
		if err != nil {
			b.Fatal(err)
		}
		defer ns.Close()
		// Calls on the first network, timed while stop is open.
		calls := func(stop chan struct{}) []time.Duration {
			var took []time.Duration
			inNetnsOf(ns, func() error {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return nil
					default:
					}
					ep := fmt.Sprintf("ffffff%06x%052d", i, 0)
					start := time.Now()
					if _, err := e.net.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: nets[0].ID, EndpointID: ep,
						Interface: &api.EndpointInterface{Address: "10.100.0.200/24"}, Options: map[string]any{}}); err != nil {
						return err
					}
					if err := e.net.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: nets[0].ID, EndpointID: ep}); err != nil {
						return err
					}
					took = append(took, time.Since(start))
				}
			})
			return took
		}
		quiet := make(chan struct{})
		var alone []time.Duration
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); alone = calls(quiet) }()
		time.Sleep(3 * time.Second)
		close(quiet)
		wg.Wait()

		stop := make(chan struct{})
		var during []time.Duration
		wg.Add(1)
		go func() { defer wg.Done(); during = calls(stop) }()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if o := l.Once(context.Background()); o != OK {
				b.Fatalf("outcome %s", o)
			}
		}
		b.StopTimer()
		close(stop)
		wg.Wait()
		if len(e.repaired()) != 0 {
			b.Fatalf("repairs in a clean state: %v", e.repaired())
		}
		p50, max := stats(alone)
		b.ReportMetric(p50, "call-p50-ms-alone")
		b.ReportMetric(max, "call-max-ms-alone")
		p50, max = stats(during)
		b.ReportMetric(p50, "call-p50-ms-during")
		b.ReportMetric(max, "call-max-ms-during")
	})
}

// stats gives the median and the maximum in milliseconds.
func stats(ds []time.Duration) (p50, max float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return float64(ds[len(ds)/2]) / 1e6, float64(ds[len(ds)-1]) / 1e6
}
