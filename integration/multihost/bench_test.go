//go:build integration

package multihost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkMultiHost is make bench's multi-host table: on the same three
// simulated hosts in one run, mynet's vxlan backend against Docker's own
// overlay (swarm on those dockerds, --attachable, its data path on UDP 4790
// so both tunnels coexist), configurations interleaved round by round:
// cross-host TCP throughput (iperf3 between two containers), ping RTT and
// docker run time; then cluster allocations per second, requested from all
// three hosts at once through their plugin sockets, with duplicates counted
// (must be 0). One pass whatever b.N; run it with -benchtime 1x.
//
// Knobs: BENCH_MH_ROUNDS (3), BENCH_MH_IPERF_SECS per run (3),
// BENCH_MH_PINGS per configuration (300), BENCH_MH_RUNS (6),
// BENCH_MH_ALLOCS per host (1000), BENCH_MH_WORKERS per host (16).
func BenchmarkMultiHost(b *testing.B) {
	rounds, iperfSecs, pings := envInt("BENCH_MH_ROUNDS", 3), envInt("BENCH_MH_IPERF_SECS", 3), envInt("BENCH_MH_PINGS", 300)
	runs, allocs, workers := envInt("BENCH_MH_RUNS", 6), envInt("BENCH_MH_ALLOCS", 1000), envInt("BENCH_MH_WORKERS", 16)
	h1, h2 := L.hosts[0], L.hosts[1]

	startSwarm(b)
	vxlanNet(b, "bench", "10.222.0.0/24", []*host{h1, h2})
	h1.mustDocker(b, "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.223.0.0/24", "mit-ov")
	b.Cleanup(func() { h1.docker(b, "network", "rm", "mit-ov") })

	type cfg struct {
		name, network string
		cli, srv      string // container names: client on h1, server on h2
		srvIP         string
		cliPid        string
		srvPid        string
		brNF0         bool // bridge-nf-call-iptables=0 on h1 and h2 while measured
	}
	// The third configuration is the second's containers on hosts whose
	// bridged frames skip netfilter, as where br_netfilter is not loaded:
	// Docker 28 loads it only for enable_icc=false networks or with the
	// userland proxy off, Docker 20.10 always, and then every bridge in the
	// host's namespace hands its frames to iptables. Docker's overlay keeps
	// its bridges in namespaces of their own, without rules, either way.
	cfgs := []*cfg{{name: "Docker overlay", network: "mit-ov"}, {name: "mynet vxlan", network: "mit-bench"},
		{name: "mynet vxlan, bridge-nf-call-iptables=0", network: "mit-bench", brNF0: true}}
	const brNFKey = "net.bridge.bridge-nf-call-iptables"
	brNFWas := map[*host]string{} // each host's own setting, put back after each round
	for _, h := range []*host{h1, h2} {
		out, err := h.run("sysctl", "-n", brNFKey)
		if err != nil {
			b.Fatalf("%s: %s: %v %s", h.Name, brNFKey, err, out)
		}
		brNFWas[h] = strings.TrimSpace(out)
	}
	brNF := func(c *cfg, on bool) {
		if !c.brNF0 {
			return
		}
		for _, h := range []*host{h1, h2} {
			v := brNFWas[h]
			if on {
				v = "0"
			}
			if out, err := h.run("sysctl", "-qw", brNFKey+"="+v); err != nil {
				b.Fatalf("%s: %v %s", h.Name, err, out)
			}
		}
	}
	b.Cleanup(func() { brNF(cfgs[2], false) })
	for i, c := range cfgs {
		if c.brNF0 {
			c.cli, c.srv, c.srvIP, c.cliPid, c.srvPid = cfgs[1].cli, cfgs[1].srv, cfgs[1].srvIP, cfgs[1].cliPid, cfgs[1].srvPid
			continue
		}
		c.cli, c.srv = fmt.Sprintf("mit-bcli%d", i), fmt.Sprintf("mit-bsrv%d", i)
		h1.container(b, c.cli, c.network)
		c.srvIP = h2.container(b, c.srv, c.network)
		c.cliPid = h1.mustDocker(b, "inspect", "-f", "{{.State.Pid}}", c.cli)
		c.srvPid = h2.mustDocker(b, "inspect", "-f", "{{.State.Pid}}", c.srv)
		eventually(b, 30*time.Second, c.name+" reachable", func() error { return h1.ping(b, c.cli, c.srvIP, 56) })
	}

	tput := map[string][]float64{}
	rtt := map[string][]float64{}
	start := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		for _, c := range rotate(cfgs, r) {
			brNF(c, true)
			v, err := iperf(c.cliPid, c.srvPid, c.srvIP, iperfSecs)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			tput[c.name] = append(tput[c.name], v)
			out := h1.mustDocker(b, "exec", c.cli, "ping", "-q", "-c", fmt.Sprint(pings/rounds), "-i", "0.01", c.srvIP)
			avg, err := pingAvg(out)
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			rtt[c.name] = append(rtt[c.name], avg)
			brNF(c, false)
		}
	}
	// docker run on h2 (a swarm worker for the overlay): one warm-up each.
	for r := -1; r < runs; r++ {
		for _, c := range rotate(cfgs[:2], r+1) {
			name := fmt.Sprintf("mit-brun-%d", r+1)
			t0 := time.Now()
			h2.mustDocker(b, "run", "-d", "--name", name, "--network", c.network, image, "sleep", "3600")
			took := time.Since(t0)
			h2.removeContainers(b, name)
			if r >= 0 {
				start[c.name] = append(start[c.name], float64(took.Milliseconds()))
			}
		}
	}

	rate, dups, total := clusterAllocations(b, allocs, workers)
	if dups != 0 {
		b.Fatalf("%d duplicate addresses among %d cluster allocations", dups, total)
	}

	ov, mn, nf0 := cfgs[0].name, cfgs[1].name, cfgs[2].name
	rows := [][]string{
		{"measurement", "Docker overlay", "mynet vxlan", "ratio", "note"},
		{"---", "---:", "---:", "---:", "---"},
		row(fmt.Sprintf("iperf3 TCP across hosts (Mbit/s, median of %d x %d s)", rounds, iperfSecs), median(tput[ov]), median(tput[mn]), 0, "ratio > 1: mynet faster"),
		row(fmt.Sprintf("ping rtt across hosts (ms, %d at 0.01 s)", pings), mean(rtt[ov]), mean(rtt[mn]), 3, ""),
		row("iperf3 TCP across hosts, bridge-nf-call-iptables=0 (Mbit/s)", median(tput[ov]), median(tput[nf0]), 0, "the same containers; as without br_netfilter (Docker 28 loads it only for enable_icc=false or without the userland proxy)"),
		row("ping rtt across hosts, bridge-nf-call-iptables=0 (ms)", mean(rtt[ov]), mean(rtt[nf0]), 3, "the same containers"),
		row(fmt.Sprintf("docker run -d on a second host (ms, median of %d)", runs), median(start[ov]), median(start[mn]), 0, "Docker: the host is a swarm worker"),
		{fmt.Sprintf("cluster allocations/s, 3 hosts x %d concurrent, %d in all", workers, total), "-", fmt.Sprintf("%.0f", rate), "-", fmt.Sprintf("%d duplicates; through the plugin sockets (HTTP, etcd, bbolt)", dups)},
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nmulti-host: 3 simulated hosts (netns + own dockerd + own mynet), underlay MTU 1500, etcd on the underlay\n\n")
	for _, r := range rows {
		fmt.Fprintf(&out, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Print(out.String())
	if path := os.Getenv("BENCH_MH_OUT"); path != "" {
		os.WriteFile(path, []byte(out.String()), 0o644)
	}
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

// rotate starts the order at r, so no configuration always runs first.
func rotate[T any](xs []T, r int) []T {
	out := make([]T, 0, len(xs))
	for i := range xs {
		out = append(out, xs[(i+r)%len(xs)])
	}
	return out
}

func row(what string, docker, mynet float64, prec int, note string) []string {
	f := "%." + strconv.Itoa(prec) + "f"
	ratio := "-"
	if docker > 0 {
		ratio = fmt.Sprintf("%.2f", mynet/docker)
	}
	return []string{what, fmt.Sprintf(f, docker), fmt.Sprintf(f, mynet), ratio, note}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// startSwarm makes the first host a swarm manager and the others workers,
// with the overlay's data path off mynet's VXLAN port; it leaves at the end.
func startSwarm(b *testing.B) {
	h1 := L.hosts[0]
	h1.mustDocker(b, "swarm", "init", "--advertise-addr", h1.Addr, "--data-path-port", "4790")
	b.Cleanup(func() {
		for i := len(L.hosts) - 1; i >= 0; i-- {
			L.hosts[i].docker(b, "swarm", "leave", "--force")
		}
	})
	token := h1.mustDocker(b, "swarm", "join-token", "-q", "worker")
	for _, h := range L.hosts[1:] {
		h.mustDocker(b, "swarm", "join", "--token", token, "--advertise-addr", h.Addr, h1.Addr+":2377")
	}
}

var mbitsRE = regexp.MustCompile(`([0-9.]+) Mbits/sec.*receiver`)

// iperf runs one iperf3 transfer between two containers' namespaces (the
// host's iperf3, entered into them) and returns Mbit/s.
func iperf(cliPid, srvPid, srvIP string, secs int) (float64, error) {
	srv := exec.Command("nsenter", "--net=/proc/"+srvPid+"/ns/net", "iperf3", "-s", "-1", "-p", "5201")
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var out []byte
	var err error
	for i := 0; i < 50; i++ { // until the server listens
		out, err = exec.Command("nsenter", "--net=/proc/"+cliPid+"/ns/net", "iperf3", "-c", srvIP, "-p", "5201", "-t", fmt.Sprint(secs), "-f", "m").CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v: %s", err, out)
	}
	m := mbitsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("iperf3 output without a receiver rate: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

var avgRE = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

func pingAvg(out string) (float64, error) {
	m := avgRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("ping output without an average: %s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

// pluginClient talks to a host's plugin socket from outside its mount
// namespace, through the namespace holder's root.
func (h *host) pluginClient() *http.Client {
	sock := filepath.Join("/proc", fmt.Sprint(h.Eng.Holder), "root/run/docker/plugins/mynet.sock")
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func call(c *http.Client, path string, req, resp any) error {
	body, _ := json.Marshal(req)
	r, err := c.Post("http://mynet"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		var e struct{ Err, Error string }
		json.NewDecoder(r.Body).Decode(&e)
		return fmt.Errorf("%s: %s %s%s", path, r.Status, e.Err, e.Error)
	}
	if resp != nil {
		return json.NewDecoder(r.Body).Decode(resp)
	}
	return nil
}

// clusterAllocations requests addresses of one cluster pool from every host
// at once, as Docker would (IpamDriver.RequestAddress), and counts
// duplicates; then gives everything back.
func clusterAllocations(b *testing.B, perHost, workers int) (rate float64, dups, total int) {
	type poolResp struct{ PoolID string }
	type addrResp struct{ Address string }
	clients := make([]*http.Client, len(L.hosts))
	pools := make([]string, len(L.hosts))
	for i, h := range L.hosts {
		clients[i] = h.pluginClient()
		req := map[string]any{"AddressSpace": "LocalDefault", "Options": map[string]string{"network": "alloc"}}
		if i == 0 {
			req["Pool"] = "10.224.0.0/16"
		}
		var p poolResp
		if err := call(clients[i], "/IpamDriver.RequestPool", req, &p); err != nil {
			b.Fatalf("%s: %v", h.Name, err)
		}
		pools[i] = p.PoolID
	}
	var mu sync.Mutex
	got := map[int][]string{}
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, len(L.hosts)*workers)
	t0 := time.Now()
	for i := range L.hosts {
		for w := 0; w < workers; w++ {
			n := perHost / workers
			if w < perHost%workers {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					var a addrResp
					if err := call(clients[i], "/IpamDriver.RequestAddress", map[string]any{"PoolID": pools[i], "Options": map[string]string{}}, &a); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					got[i] = append(got[i], strings.Split(a.Address, "/")[0])
					seen[a.Address]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, n := range seen {
		total += n
		dups += n - 1
	}
	var rel sync.WaitGroup
	for i := range L.hosts {
		rel.Add(1)
		go func() {
			defer rel.Done()
			for _, a := range got[i] {
				call(clients[i], "/IpamDriver.ReleaseAddress", map[string]any{"PoolID": pools[i], "Address": a}, nil)
			}
			call(clients[i], "/IpamDriver.ReleasePool", map[string]any{"PoolID": pools[i]}, nil)
		}()
	}
	rel.Wait()
	return float64(total) / elapsed.Seconds(), dups, total
}
