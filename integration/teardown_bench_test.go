//go:build integration

package integration

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkTeardown times what a user waits for when containers and networks
// go: `docker rm -f` of BENCH_TEARDOWN_CTRS (20) containers of one network at
// once, then `docker network rm`, on Docker's bridge and on mynet, the two
// alternating for BENCH_TEARDOWN_ROUNDS (5) rounds on the engine under test
// (the host's, or MYNET_IT_DOCKERD's). It reports the medians in ms and the
// ratios mynet / Docker. The plugin's teardown mode is whatever
// --async-teardown auto chose for that engine (the log says which).
//
//	go test -tags integration -run '^$' -bench '^BenchmarkTeardown$' -benchtime 1x ./integration/
func BenchmarkTeardown(b *testing.B) {
	ctrs := envInt("BENCH_TEARDOWN_CTRS", 20)
	rounds := envInt("BENCH_TEARDOWN_ROUNDS", 5)
	if !plugin.Running() {
		if err := plugin.Start(); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { removePrefixed(os.Stderr) })
	drivers := []struct{ key, driver string }{{"bridge", "bridge"}, {"mynet", pluginName}}
	times := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for j := range drivers {
				d := drivers[(j+r)%2] // alternate which goes first
				rm, netRm := teardownRound(b, d.driver, fmt.Sprintf("mit-td-%s-%d", d.key, r), ctrs, r)
				times[d.key+"-rm"] = append(times[d.key+"-rm"], rm)
				times[d.key+"-netrm"] = append(times[d.key+"-netrm"], netRm)
			}
		}
	}
	med := func(k string) float64 {
		v := slices.Clone(times[k])
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, k := range []string{"bridge-rm", "mynet-rm", "bridge-netrm", "mynet-netrm"} {
		b.ReportMetric(med(k), k+"-ms")
	}
	b.ReportMetric(med("mynet-rm")/med("bridge-rm"), "rm-ratio")
	b.ReportMetric(med("mynet-netrm")/med("bridge-netrm"), "netrm-ratio")
	b.Logf("engine API %s; rounds %d of %d containers; all samples (ms): %v",
		mustDocker(b, "version", "--format", "{{.Server.APIVersion}}"), rounds, ctrs, times)
}

// teardownRound makes a network of driver with n running containers, then
// times `docker rm -f` of all of them and `docker network rm`, in ms.
func teardownRound(b *testing.B, driver, name string, n, round int) (rm, netRm float64) {
	b.Helper()
	third := round * 2 // a /24 of its own for each driver and round
	if driver == "bridge" {
		third++
	}
	mustDocker(b, "network", "create", "-d", driver, "--subnet", fmt.Sprintf("10.135.%d.0/24", third), name)
	names := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", name, i)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if out, err := dockerCmd("run", "-d", "--name", names[i], "--network", name, testImage, "sleep", "3600"); err != nil {
				errs[i] = fmt.Errorf("docker run %s: %v: %s", names[i], err, out)
			}
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	mustDocker(b, append([]string{"rm", "-f"}, names...)...)
	rm = ms(time.Since(start))
	start = time.Now()
	if out, err := dockerCmd("network", "rm", name); err != nil {
		// Docker 20.10 now and then refuses for a moment with "has active
		// endpoints" (its own bridge too): not a sample.
		b.Logf("docker network rm %s: %v: %s; retrying", name, err, out)
		if err := eventually(10*time.Second, func() error { _, err := dockerCmd("network", "rm", name); return err }); err != nil {
			b.Fatalf("docker network rm %s: %v", name, err)
		}
	}
	netRm = ms(time.Since(start))
	return rm, netRm
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
