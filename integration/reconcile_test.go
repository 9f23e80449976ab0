//go:build integration

package integration

// The plugin's background reconcile against the real dockerd: what Docker
// forgot heals without `mynet doctor`, and neither a dockerd restart nor
// mynet starting before dockerd (as at boot) makes either of them wait.

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/drift"
)

// withReconcile restarts the shared plugin with its background reconcile
// every `every` with grace `grace`, and with its own flags after the test.
func withReconcile(t *testing.T, every, grace time.Duration) {
	t.Helper()
	old := plugin.Args
	plugin.Args = append(slices.Clone(old), "--reconcile-every", every.String(), "--reconcile-grace", grace.String())
	if err := plugin.Restart(); err != nil {
		t.Fatalf("restart the plugin with its reconcile every %s: %v", every, err)
	}
	t.Cleanup(func() {
		plugin.Args = old
		if err := plugin.Restart(); err != nil {
			t.Errorf("restart the plugin with its own flags: %v", err)
		}
	})
}

// pluginPost makes a protocol call on the shared plugin's socket, as dockerd
// would, and returns the status and body.
func pluginPost(path, body string) (int, string, error) {
	c := unixHTTPClient(plugin.SocketPath(), 30*time.Second)
	defer c.CloseIdleConnections()
	r, err := c.Post("http://p/"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b), nil
}

func mustPluginPost(t *testing.T, path, body string) string {
	t.Helper()
	code, out, err := pluginPost(path, body)
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s %s: %d %v %s", path, body, code, err, out)
	}
	return out
}

// reconcileRuns lists the outcomes of the reconcile runs the plugin logged
// after byte offset off.
func reconcileRuns(off int64) []string {
	var out []string
	for _, l := range strings.Split(plugin.LogSince(off, 1<<20), "\n") {
		if m := reReconcileRun.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

var reReconcileRun = regexp.MustCompile(`msg="reconcile run" outcome=(\S+) view_at=(\S+)`)

// Drift made the way it happens in life, healed by the background loop
// alone: a container removed while the plugin was down (Docker forgets the
// endpoint and its address), an IPAM answer lost in a crash, a bridge deleted
// by hand, and a network and a pool dockerd asked for and then forgot (it
// died mid-create): those two only after a whole interval.
func TestReconcileRepairsWhatDockerForgot(t *testing.T) {
	p := withPlugin(t)
	defer ensurePlugin(t)
	lc := assertNoBridgeLeftovers(t)
	const every, grace = 2 * time.Second, 3 * time.Second
	withReconcile(t, every, grace)
	const name = "mit-rec"
	subnet := freeV4Subnet(t, 132)
	n := lc.net(name, "-d", pluginName, "--ipam-driver", pluginName, "--subnet", subnet.String())
	for _, c := range []string{"mit-rec-1", "mit-rec-2", "mit-rec-3"} {
		runContainer(t, c, "--network", name)
	}
	gone := removeWhilePluginDown(t, p, "mit-rec-2", name)
	lost := putLostAddress(t, subnet, 200, time.Hour)
	off := p.LogSize()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	br := mynetBridge(n)
	mustRun(t, "ip", "link", "del", br)
	// What dockerd asked for just before dying mid-create.
	forgotSubnet := freeV4Subnet(t, 133)
	forgotID := strings.Repeat(fmt.Sprintf("%016x", rand.Uint64()), 4)
	forgotPool := fmt.Sprintf("LocalDefault/%s", forgotSubnet)
	t.Cleanup(func() { // idempotent, if the test stops before the reconcile
		pluginPost("NetworkDriver.DeleteNetwork", `{"NetworkID":"`+forgotID+`"}`)
		pluginPost("IpamDriver.ReleasePool", `{"PoolID":"`+forgotPool+`"}`)
	})
	mustPluginPost(t, "IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"`+forgotSubnet.String()+`"}`)
	mustPluginPost(t, "NetworkDriver.CreateNetwork", `{"NetworkID":"`+forgotID+`","Options":{"com.docker.network.generic":{}},`+
		`"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"`+forgotSubnet.String()+`","Gateway":"`+netip.PrefixFrom(nthAddr(forgotSubnet, 1), 24).String()+`"}]}`)

	want := []string{drift.EndpointUnknownToDocker, drift.AddressUnused, drift.LinksMissing, drift.NetworkUnknownToDocker, drift.PoolUnused}
	var missing []string
	err := eventually(grace+10*every+30*time.Second, func() error {
		log := p.LogSince(off, 1<<20)
		missing = nil
		for _, k := range want {
			if !strings.Contains(log, `msg="repaired: `+k+" ") {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not repaired yet: %v", missing)
		}
		return nil
	})
	took := time.Since(started)
	if err != nil {
		t.Fatalf("%v\nplugin log:\n%s", err, p.LogSince(off, 80))
	}
	t.Logf("MEASURED every drift repaired by the background reconcile (every %s, grace %s) %s after the plugin started; runs: %v",
		every, grace, took.Round(100*time.Millisecond), reconcileRuns(off))
	log := p.LogSince(off, 1<<20)
	held := strings.Index(log, "removed if still missing at the next run")
	removed := strings.Index(log, `msg="repaired: `+drift.NetworkUnknownToDocker)
	if held < 0 || held > removed {
		t.Errorf("the forgotten network was removed without being held for an interval first:\n%s", log)
	}
	if c := strings.Count(log, `by=reconcile`); c < len(want) {
		t.Errorf("%d repairs logged by=reconcile, want at least %d", c, len(want))
	}

	// Repaired for real.
	stNow, err := readStore()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stNow.endpoints[gone.EndpointID]; ok {
		t.Errorf("the forgotten endpoint is still in the store")
	}
	if _, ok := stNow.networks[forgotID]; ok {
		t.Errorf("the forgotten network is still in the store")
	}
	if _, ok := stNow.pools[forgotPool]; ok {
		t.Errorf("the forgotten pool is still in the store")
	}
	if !linkExists(br) || linkExists("mn-"+forgotID[:12]) || linkExists("mnh"+gone.EndpointID[:12]) {
		t.Errorf("links: bridge %s back %v, forgotten network's bridge gone %v, forgotten veth gone %v",
			br, linkExists(br), !linkExists("mn-"+forgotID[:12]), !linkExists("mnh"+gone.EndpointID[:12]))
	}
	if err := ping(t, "mit-rec-1", containerIP(t, "mit-rec-3", name)); err != nil {
		t.Errorf("after the repair: %v", err)
	}
	for i, ip := range []string{gone.IPAddress, lost.String()} {
		runContainer(t, fmt.Sprintf("mit-rec-again%d", i), "--network", name, "--ip", ip)
	}
	if ds, code := runDoctor(t, "--grace", "0s"); code != 0 || len(ds) != 0 {
		t.Errorf("mynet doctor after the background repairs: exit %d, drifts %+v", code, ds)
	}
}

// dockerd stopped and started while mynet runs, and mynet started while
// dockerd is down (the boot order: dockerd waits for its plugins): the plugin
// keeps answering, its reconcile only notes that Docker does not answer, and
// dockerd comes back with the --restart always containers on our network;
// then the reconcile compares again.
func TestReconcileAcrossDockerdRestartAndBoot(t *testing.T) {
	p := withPlugin(t)
	needDockerdAlone(t)
	defer ensureDockerd(t)
	defer ensurePlugin(t)
	lc := assertNoBridgeLeftovers(t)
	const every, grace = time.Second, 30 * time.Second
	withReconcile(t, every, grace)
	const name = "mit-rboot"
	n := lc.net(name, "-d", pluginName, "--ipam-driver", pluginName)
	ctrs := []string{"mit-rboot-1", "mit-rboot-2"}
	for _, c := range ctrs {
		runContainer(t, c, "--network", name, "--restart", "always")
	}

	// Picked while dockerd still answers: freeSubnet asks it.
	sub := freeSubnet(t, "10.134.0.0/24")
	off := p.LogSize()
	stopDockerd(t, dockerdPID(t))
	answers := func(when string) {
		t.Helper()
		if err := p.activate(); err != nil {
			t.Errorf("%s: the plugin does not answer Plugin.Activate: %v", when, err)
		}
		for _, call := range [][2]string{{"IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"` + sub.String() + `"}`},
			{"IpamDriver.ReleasePool", `{"PoolID":"LocalDefault/` + sub.String() + `"}`}} {
			if code, out, err := pluginPost(call[0], call[1]); err != nil || code != http.StatusOK {
				t.Errorf("%s: %s: %d %v %s", when, call[0], code, err, out)
			}
		}
	}
	if err := eventually(30*time.Second, func() error {
		if !slices.Contains(reconcileRuns(off), "docker_unreachable") {
			return fmt.Errorf("no docker_unreachable run yet")
		}
		return nil
	}); err != nil {
		t.Errorf("while dockerd is down: %v\n%s", err, p.LogSince(off, 30))
	}
	answers("dockerd down, plugin running")

	// Boot order: mynet starts first, dockerd later.
	if err := p.Restart(); err != nil {
		t.Fatalf("the plugin does not start while dockerd is down: %v", err)
	}
	answers("dockerd down, plugin just started")
	start := time.Now()
	pid, err := startDockerd()
	if err != nil {
		t.Fatalf("dockerd does not come up while mynet runs its reconcile every %s: %v", every, err)
	}
	t.Logf("MEASURED dockerd (pid %d) answered %.1fs after its start, mynet reconciling every %s", pid, time.Since(start).Seconds(), every)
	for _, c := range ctrs {
		if err := eventually(90*time.Second, func() error {
			out, err := dockerCmd("inspect", "-f", "{{.State.Running}}", c)
			if err != nil || strings.TrimSpace(out) != "true" {
				return fmt.Errorf("%s running=%q: %v", c, strings.TrimSpace(out), err)
			}
			return nil
		}); err != nil {
			t.Fatalf("--restart always container did not come back: %v", err)
		}
	}
	if err := ping(t, ctrs[0], containerIP(t, ctrs[1], name)); err != nil {
		t.Errorf("after the restart: %v", err)
	}
	back := p.LogSize()
	if err := eventually(30*time.Second, func() error {
		if !slices.Contains(reconcileRuns(back), "ok") {
			return fmt.Errorf("no ok reconcile run since dockerd is back: %v", reconcileRuns(back))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// Store and IPAM hold exactly what Docker uses on the network (after a
	// grace for anything dockerd's restart left behind).
	if err := eventually(grace+10*every+30*time.Second, func() error {
		stNow, err := readStore()
		if err != nil {
			return err
		}
		info := netInspect(t, name)
		var ours []string
		for id, ep := range stNow.endpoints {
			if ep.NetworkID == n.ID {
				ours = append(ours, id)
			}
		}
		if len(ours) != len(info.Containers) {
			return fmt.Errorf("store has %d endpoints on %s, Docker %d", len(ours), name, len(info.Containers))
		}
		for _, u := range soakPoolUsage(t) {
			if u.Pool == info.Subnets()[0] && u.Used != uint64(len(info.Containers)+1) {
				return fmt.Errorf("pool %s holds %d addresses, Docker uses %d (endpoints + gateway)", u.Pool, u.Used, len(info.Containers)+1)
			}
		}
		return nil
	}); err != nil {
		t.Errorf("after the restart: %v", err)
	}
	if strings.Contains(p.LogSince(off, 1<<20), "level=ERROR") {
		t.Errorf("errors in the plugin log:\n%s", p.LogSince(off, 60))
	}
}
