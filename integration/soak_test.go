//go:build integration

package integration

// The soak test: rounds of container churn on several mynet networks (bridge
// on Docker's IPAM, bridge on ours, macvlan on a veth parent on ours) with 20+
// docker requests in flight, and one fault per round at a random moment:
// the plugin SIGKILLed, a host reboot (plugin killed, our bridges and chains
// deleted), dockerd restarted with and without live-restore, and (SOAK_MANAGED=1)
// the managed plugin's process SIGKILLed. Nobody runs `mynet doctor`: after
// each round the test waits for the plugin's own background reconcile (every
// soakReconcileEvery) to have looked at Docker's view twice, then checks the
// invariants (soakInvariants). `make test` runs a short form (one round per fault
// kind); `make soak` a long one. SOAK_SEED replays a run.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/ipam"
)

const soakPrefix = "mit-soak-"

type soakNet struct {
	name     string
	info     NetworkInfo
	ourIPAM  bool
	macvlan  bool
	managed  bool
	keepCtrs []string // --restart always containers that live through all rounds
}

// soakStats is what the README reports.
type soakStats struct {
	rounds                 int
	starts, startFails     atomic.Int64
	removes, removeFails   atomic.Int64
	netOps, netOpFails     atomic.Int64
	faults                 map[string]int
	reconcileRepairs       map[string]int // fault kind -> repairs by the background reconcile in its rounds
	violations             int
	checkedCtrs, pingPairs int
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestSoak(t *testing.T) {
	withPlugin(t)
	needDockerdAlone(t)
	defer ensureDockerd(t)
	defer ensurePlugin(t)
	lc := assertNoBridgeLeftovers(t)

	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("SOAK_SEED"), 10, 64); err == nil {
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	kinds := []string{"plugin-kill", "host-reboot", "dockerd-live-restore", "dockerd-restart"}
	if os.Getenv("SOAK_MANAGED") == "1" {
		kinds = append(kinds, "managed-kill")
	}
	rounds := envInt("SOAK_ROUNDS", len(kinds))
	perRound := envInt("SOAK_CONTAINERS", 24)
	t.Logf("soak: seed %d (SOAK_SEED=%d replays it), %d rounds, %d containers started per round, faults %v", seed, seed, rounds, perRound, kinds)

	withReconcile(t, soakReconcileEvery, soakReconcileGrace)
	nets := soakNetworks(t, lc)
	if os.Getenv("SOAK_MANAGED") == "1" {
		nets = append(nets, soakManagedNetwork(t, lc))
	}
	st := &soakStats{faults: map[string]int{}, reconcileRepairs: map[string]int{}}
	var prev []string // churn containers of the previous round, removed under the next round's load
	for r := 0; r < rounds; r++ {
		kind := kinds[r%len(kinds)]
		start := time.Now()
		logOff := plugin.LogSize()
		prev = soakRound(t, rng, st, nets, r, kind, perRound, prev)
		soakReconciled(t, st, r, kind, logOff)
		st.rounds++
		probs := soakInvariants(t, st, lc, nets)
		st.violations += len(probs)
		for _, p := range probs {
			t.Errorf("round %d (%s), seed %d: %s", r, kind, seed, p)
		}
		t.Logf("round %d (%s) done in %s: %d violations", r, kind, time.Since(start).Round(100*time.Millisecond), len(probs))
		if len(probs) > 0 && os.Getenv("SOAK_KEEP_GOING") != "1" {
			break
		}
	}
	soakRemove(t, st, prev)
	t.Logf("SOAK SUMMARY seed=%d rounds=%d container-starts=%d (failed %d) removes=%d (failed %d) network-ops=%d (failed %d) faults=%v reconcile-repairs=%v containers-checked=%d ping-pairs=%d invariant-violations=%d",
		seed, st.rounds, st.starts.Load(), st.startFails.Load(), st.removes.Load(), st.removeFails.Load(),
		st.netOps.Load(), st.netOpFails.Load(), st.faults, st.reconcileRepairs, st.checkedCtrs, st.pingPairs, st.violations)
}

// soakNetworks creates the networks that live through the whole soak, each
// with two --restart always containers.
func soakNetworks(t *testing.T, lc *leakCheck) []*soakNet {
	t.Helper()
	mvSub := freeSubnet(t, "10.174.0.0/24")
	parent, lanHost := lanParent(t, "s", mvSub)
	nets := []*soakNet{
		{name: soakPrefix + "br-dflt"},
		{name: soakPrefix + "br-ours", ourIPAM: true},
		{name: soakPrefix + "mv-ours", ourIPAM: true, macvlan: true},
	}
	for i, n := range nets {
		args := []string{"-d", pluginName}
		switch {
		case n.macvlan:
			args = append(args, "-o", "backend=macvlan", "-o", "parent="+parent, "--ipam-driver", pluginName,
				"--subnet", mvSub.String(), "--gateway", lanHost.String())
		case n.ourIPAM:
			args = append(args, "--ipam-driver", pluginName)
		default:
			args = append(args, "--subnet", freeV4Subnet(t, 120+i).String())
		}
		n.info = lc.net(n.name, args...)
		for j := 0; j < 2; j++ {
			c := fmt.Sprintf("%skeep-%d-%d", soakPrefix, i, j)
			runContainer(t, c, "--network", n.name, "--restart", "always")
			n.keepCtrs = append(n.keepCtrs, c)
		}
	}
	return nets
}

// soakRound starts perRound containers and removes the previous round's, all
// at once (20+ docker requests in flight), creates and removes one network,
// and fires the round's fault at a random moment during that load.
func soakRound(t *testing.T, rng *rand.Rand, st *soakStats, nets []*soakNet, r int, kind string, perRound int, prev []string) []string {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var started []string
	for i := 0; i < perRound; i++ {
		n := nets[i%len(nets)]
		name := fmt.Sprintf("%sr%d-%d", soakPrefix, r, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.starts.Add(1)
			out, err := dockerCmd("run", "-d", "--name", name, "--network", n.name, testImage, "sleep", "3600")
			if err != nil {
				st.startFails.Add(1)
				t.Logf("round %d: run %s: %v: %s", r, name, err, strings.TrimSpace(out))
			}
			mu.Lock()
			started = append(started, name) // failed ones too: a half-created container is removed next round
			mu.Unlock()
		}()
	}
	for _, c := range prev {
		wg.Add(1)
		go func() {
			defer wg.Done()
			soakRemove(t, st, []string{c})
		}()
	}
	// A network made and removed under load: Docker's removal must reach the
	// kernel and the store even when a fault hits in between.
	eph := fmt.Sprintf("%seph-%d", soakPrefix, r)
	ephPause := time.Duration(rng.IntN(1000)) * time.Millisecond // drawn here: rng is not safe across goroutines, and a seed must replay
	wg.Add(1)
	go func() {
		defer wg.Done()
		st.netOps.Add(2)
		if out, err := dockerCmd("network", "create", "-d", pluginName, "--ipam-driver", pluginName, eph); err != nil {
			st.netOpFails.Add(1)
			t.Logf("round %d: network create %s: %v: %s", r, eph, err, strings.TrimSpace(out))
		}
		time.Sleep(ephPause)
		if out, err := dockerCmd("network", "rm", eph); err != nil {
			st.netOpFails.Add(1)
			t.Logf("round %d: network rm %s: %v: %s", r, eph, err, strings.TrimSpace(out))
		}
	}()

	var restoreLive func()
	if kind == "dockerd-live-restore" {
		restoreLive = soakLiveRestore(t, true)
	}
	delay := time.Duration(rng.IntN(1500)) * time.Millisecond
	time.Sleep(delay)
	t.Logf("round %d: fault %s %s after the load started", r, kind, delay)
	soakFault(t, rng, nets, kind)
	st.faults[kind]++
	wg.Wait()
	if restoreLive != nil {
		restoreLive()
	}
	soakRecover(t, nets)
	// Removals a fault made fail are retried now, as a user would.
	for _, c := range prev {
		if _, err := dockerCmd("inspect", "--type", "container", c); err == nil {
			soakRemove(t, st, []string{c})
		}
	}
	// The ephemeral network may have survived a failed rm: remove it now that all is up.
	if _, err := dockerCmd("network", "inspect", eph); err == nil {
		if out, err := dockerCmd("network", "rm", eph); err != nil {
			t.Errorf("round %d: network rm %s after recovery: %v: %s", r, eph, err, out)
		}
	}
	return started
}

func soakRemove(t *testing.T, st *soakStats, ctrs []string) {
	for _, c := range ctrs {
		st.removes.Add(1)
		out, err := dockerCmd("rm", "-f", c)
		if err != nil && !strings.Contains(out, "No such container") {
			st.removeFails.Add(1)
			t.Logf("rm -f %s: %v: %s", c, err, strings.TrimSpace(out))
		}
	}
}

// soakFault injects one fault.
func soakFault(t *testing.T, rng *rand.Rand, nets []*soakNet, kind string) {
	t.Helper()
	switch kind {
	case "plugin-kill":
		if err := plugin.Kill(); err != nil {
			t.Fatalf("SIGKILL plugin: %v", err)
		}
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		if err := plugin.Start(); err != nil {
			t.Fatalf("start plugin after SIGKILL: %v", err)
		}
	case "host-reboot":
		if err := plugin.Kill(); err != nil {
			t.Fatalf("SIGKILL plugin: %v", err)
		}
		ours := map[string]bool{}
		for _, n := range nets {
			if n.managed {
				continue
			}
			ours[n.info.ID[:12]] = true
			if !n.macvlan {
				_ = exec.Command("ip", "link", "del", mynetBridge(n.info)).Run()
			}
		}
		// The ephemeral network of this round may exist too: all of the
		// plugin's bridges go, as in a reboot.
		if out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output(); err == nil {
			for _, l := range strings.Split(string(out), "\n") {
				if f := strings.Fields(l); len(f) > 1 {
					br := strings.TrimSuffix(f[1], ":")
					if m := reLinkNet.FindStringSubmatch(br); m != nil && soakOwnsBridge(m[1]) {
						_ = exec.Command("ip", "link", "del", br).Run()
						ours[m[1]] = true
					}
				}
			}
		}
		if waitDockerdIdle(t, 0) {
			wipeOurFirewall(t, nil)
		} else {
			wipeOurFirewall(t, ours)
		}
		if err := plugin.Start(); err != nil {
			t.Fatalf("start plugin after the reboot: %v", err)
		}
	case "dockerd-live-restore", "dockerd-restart":
		stopDockerd(t, dockerdPID(t))
		if _, err := startDockerd(); err != nil {
			t.Fatal(err)
		}
	case "managed-kill":
		soakKillManaged(t)
	default:
		t.Fatalf("unknown fault %q", kind)
	}
}

// soakOwnsBridge: the bridge belongs to a network in the shared plugin's store.
func soakOwnsBridge(id12 string) bool {
	st, err := readStore()
	if err != nil {
		return false
	}
	for id := range st.networks {
		if strings.HasPrefix(id, id12) {
			return true
		}
	}
	return false
}

// soakLiveRestore switches dockerd's live-restore on through daemon.json and
// SIGHUP (a reloadable setting) and returns the function that switches it back.
func soakLiveRestore(t *testing.T, on bool) func() {
	t.Helper()
	const cfg = "/etc/docker/daemon.json"
	old, err := os.ReadFile(cfg)
	existed := err == nil
	m := map[string]any{}
	if existed {
		if err := json.Unmarshal(old, &m); err != nil {
			t.Fatalf("%s is not JSON: %v", cfg, err)
		}
	}
	m["live-restore"] = on
	b, _ := json.Marshal(m)
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	reload := func(want string) {
		t.Helper()
		if err := syscall.Kill(dockerdPID(t), syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP dockerd: %v", err)
		}
		if err := eventually(10*time.Second, func() error {
			out, err := dockerCmd("info", "--format", "{{.LiveRestoreEnabled}}")
			if err != nil || strings.TrimSpace(out) != want {
				return fmt.Errorf("LiveRestoreEnabled=%q (%v), want %s", strings.TrimSpace(out), err, want)
			}
			return nil
		}); err != nil {
			t.Fatalf("live-restore reload: %v", err)
		}
	}
	reload(strconv.FormatBool(on))
	restored := false
	undo := func() {
		if restored {
			return
		}
		restored = true
		// A reload only changes keys the file sets: say false, reload, then
		// put the file back as it was.
		if _, err := dockerCmd("info"); err == nil {
			m["live-restore"] = false
			b, _ := json.Marshal(m)
			if err := os.WriteFile(cfg, b, 0o644); err == nil {
				reload("false")
			}
		}
		if existed {
			_ = os.WriteFile(cfg, old, 0o644)
		} else {
			_ = os.Remove(cfg)
		}
	}
	t.Cleanup(undo)
	return undo
}

// soakRecover waits until dockerd answers, the plugin serves and every
// --restart always container runs again.
func soakRecover(t *testing.T, nets []*soakNet) {
	t.Helper()
	if err := eventually(90*time.Second, func() error { _, err := dockerCmd("info"); return err }); err != nil {
		t.Fatalf("dockerd does not answer after the fault: %v", err)
	}
	if !plugin.Running() {
		if err := plugin.Start(); err != nil {
			t.Fatalf("start plugin: %v", err)
		}
	}
	for _, n := range nets {
		for _, c := range n.keepCtrs {
			if err := waitRunning(c, 90*time.Second); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		}
	}
	// Churn containers a dockerd restart stopped: what a user would remove.
	out, _ := dockerCmd("ps", "-a", "--filter", "name="+soakPrefix+"r", "--filter", "status=exited", "--filter", "status=created", "-q")
	for _, id := range strings.Fields(out) {
		_, _ = dockerCmd("rm", "-f", id)
	}
}

// The plugin's background reconcile in the soak: short enough for a test,
// with a grace that still covers Docker's slowest start under the soak's load
// (a record younger than the grace is never judged).
const (
	soakReconcileEvery = 5 * time.Second
	soakReconcileGrace = 20 * time.Second
)

// soakReconciled waits, once the round is over and nothing is in flight,
// until two reconcile runs have compared with a view of Docker read a grace
// after now: the first sees whatever of the round Docker lacks (endpoints,
// addresses, networks, pools), the second (an interval later) removes it. It
// counts the repairs of the round.
func soakReconciled(t *testing.T, st *soakStats, r int, kind string, logOff int64) {
	t.Helper()
	quiet := time.Now()
	deadline := quiet.Add(soakReconcileGrace + 10*soakReconcileEvery + time.Minute)
	for {
		ok := 0
		for _, l := range strings.Split(plugin.LogSince(logOff, 1<<20), "\n") {
			m := reReconcileRun.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339, m[2])
			if err == nil && m[1] == "ok" && !at.Before(quiet.Add(soakReconcileGrace)) {
				ok++
			}
		}
		if ok >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("round %d: no two ok reconcile runs with a view read %s after the round within %s:\n%s",
				r, soakReconcileGrace, time.Since(quiet).Round(time.Second), plugin.LogSince(logOff, 40))
			break
		}
		time.Sleep(time.Second)
	}
	var repaired []string
	for _, l := range strings.Split(plugin.LogSince(logOff, 1<<20), "\n") {
		if strings.Contains(l, `msg="repaired: `) && strings.Contains(l, "by=reconcile") {
			repaired = append(repaired, l)
		}
	}
	st.reconcileRepairs[kind] += len(repaired)
	t.Logf("round %d: %d repairs by the background reconcile, %s after the round:\n%s", r, len(repaired),
		time.Since(quiet).Round(100*time.Millisecond), strings.Join(repaired, "\n"))
}

// soakInvariants checks, after a round: no address held twice; each running
// container has the address Docker thinks it has and reaches a peer; store,
// kernel and IPAM hold nothing that Docker does not use.
func soakInvariants(t *testing.T, st *soakStats, lc *leakCheck, nets []*soakNet) []string {
	t.Helper()
	var probs []string
	add := func(f string, a ...any) { probs = append(probs, fmt.Sprintf(f, a...)) }
	stNow, err := readStore()
	if err != nil {
		return []string{"read the plugin state: " + err.Error()}
	}
	usage := soakPoolUsage(t)
	for _, n := range nets {
		info, err := inspect[NetworkInfo]("network", "inspect", n.name)
		if err != nil {
			add("%v", err)
			continue
		}
		held := map[netip.Addr]string{}
		type member struct {
			name string
			ip   netip.Addr
		}
		var members []member
		for _, c := range info.Containers {
			p, err := netip.ParsePrefix(c.IPv4Address)
			if err != nil {
				add("%s: %s has no IPv4 address in Docker's view (%q)", n.name, c.Name, c.IPv4Address)
				continue
			}
			if other, dup := held[p.Addr()]; dup {
				add("%s: address %s held by %s and %s", n.name, p.Addr(), other, c.Name)
			}
			held[p.Addr()] = c.Name
			members = append(members, member{c.Name, p.Addr()})
			if !n.managed {
				ep, ok := stNow.endpoints[c.EndpointID]
				if !ok {
					add("%s: Docker's endpoint %s (%s) is not in the plugin's store", n.name, c.EndpointID[:12], c.Name)
				} else if ep.IPv4.Addr() != p.Addr() {
					add("%s: %s has %s in Docker but %s in the store", n.name, c.Name, p.Addr(), ep.IPv4.Addr())
				}
			}
			// The address the container really has.
			out, err := dockerExec(c.Name, "ip", "-4", "addr", "show", "eth0")
			if err != nil || !strings.Contains(out, "inet "+p.String()) {
				add("%s: %s's eth0 does not have %s (Docker's view): %v\n%s", n.name, c.Name, p, err, out)
			}
			st.checkedCtrs++
		}
		if !n.managed {
			for id, ep := range stNow.endpoints {
				if ep.NetworkID == info.ID {
					if _, ok := info.Containers[soakCtrOf(info, id)]; !ok {
						add("%s: store endpoint %s (%s) has no container in Docker", n.name, id[:12], ep.IPv4)
					}
				}
			}
		}
		// Each container reaches the next one (a ring over the network).
		sort.Slice(members, func(i, j int) bool { return members[i].name < members[j].name })
		for i := range members {
			if len(members) < 2 {
				break
			}
			to := members[(i+1)%len(members)]
			if err := ping(t, members[i].name, to.ip); err != nil {
				add("%s: %s cannot reach %s (%s): %v", n.name, members[i].name, to.name, to.ip, err)
			}
			st.pingPairs++
		}
		// Our IPAM holds exactly Docker's endpoints plus the gateway.
		if n.ourIPAM && !n.managed {
			for _, s := range info.Subnets() {
				u, ok := usage[s.Masked()]
				if !ok {
					add("%s: no IPAM pool for %s", n.name, s)
					continue
				}
				if want := uint64(len(info.Containers) + 1); u.Used != want {
					add("%s: IPAM pool %s has %d addresses allocated, Docker uses %d (endpoints + gateway)", n.name, s, u.Used, want)
				}
			}
		}
	}
	// Everything of ours that appeared since the soak began belongs to
	// something Docker has (links, rules, records, pools), and the
	// ephemeral networks Docker removed are gone.
	mid := &leakCheck{t: t, before: lc.before, keepLinks: lc.keepLinks}
	probs = append(probs, mid.problems()...)
	for id, n := range stNow.networks {
		if _, err := dockerCmd("network", "inspect", id); err != nil {
			add("store has network %s (%s) that Docker removed", id[:12], n.Bridge)
		}
	}
	return probs
}

// soakCtrOf maps an endpoint id to the key of info.Containers that holds it.
func soakCtrOf(info NetworkInfo, epID string) string {
	for k, c := range info.Containers {
		if c.EndpointID == epID {
			return k
		}
	}
	return ""
}

// soakPoolUsage asks the running plugin for its pools over the admin socket.
func soakPoolUsage(t *testing.T) map[netip.Prefix]ipam.PoolUsage {
	t.Helper()
	c := unixHTTPClient(plugin.State+".sock", 10*time.Second)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://mynet/v1/snapshot")
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	defer resp.Body.Close()
	var snap struct{ Pools []ipam.PoolUsage }
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		t.Fatalf("admin snapshot: %v", err)
	}
	m := map[netip.Prefix]ipam.PoolUsage{}
	for _, p := range snap.Pools {
		m[p.Pool.Masked()] = p
	}
	return m
}

// soakManagedNetwork enables the managed plugin (built as plugin_test does)
// and makes a network on it with two --restart always containers.
func soakManagedNetwork(t *testing.T, lc *leakCheck) *soakNet {
	t.Helper()
	ref := ptSetup(t, t.TempDir())
	n := &soakNet{name: soakPrefix + "managed", managed: true, ourIPAM: true}
	n.info = lc.net(n.name, "-d", ref, "--ipam-driver", ref)
	for j := 0; j < 2; j++ {
		c := fmt.Sprintf("%skeep-m-%d", soakPrefix, j)
		runContainer(t, c, "--network", n.name, "--restart", "always")
		n.keepCtrs = append(n.keepCtrs, c)
	}
	soakManagedRef = ref
	return n
}

var soakManagedRef string

// soakManagedPid is the pid of the managed plugin's process, from containerd
// (dockerd runs plugins in containerd namespace plugins.moby, task id = plugin id).
func soakManagedPid(t *testing.T) int {
	t.Helper()
	id := strings.TrimSpace(mustDocker(t, "plugin", "inspect", "-f", "{{.Id}}", soakManagedRef))
	out, err := exec.Command("ctr", "--address", "/run/docker/containerd/containerd.sock", "-n", "plugins.moby", "tasks", "ls").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr tasks ls: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id && f[2] == "RUNNING" {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// soakKillManaged SIGKILLs the managed plugin's process (ours: dockerd started
// it for `docker plugin enable`) and waits for Docker to bring it back, or
// re-enables it as an operator would.
func soakKillManaged(t *testing.T) {
	t.Helper()
	pid := soakManagedPid(t)
	if pid == 0 {
		t.Fatalf("managed plugin %s has no running task", soakManagedRef)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL managed plugin pid %d: %v", pid, err)
	}
	if eventually(15*time.Second, func() error {
		if p := soakManagedPid(t); p == 0 || p == pid {
			return fmt.Errorf("not running again")
		}
		return nil
	}) == nil {
		t.Logf("dockerd restarted the managed plugin after SIGKILL of pid %d", pid)
		return
	}
	t.Logf("managed plugin not restarted by dockerd within 15s after SIGKILL of pid %d: disable -f + enable", pid)
	_, _ = docker(t, "plugin", "disable", "-f", soakManagedRef)
	mustDocker(t, "plugin", "enable", soakManagedRef)
}
