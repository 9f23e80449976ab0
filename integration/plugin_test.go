//go:build integration

package integration

// The managed (v2) plugin through the real engine: built with
// integration/plugin/build.sh (what `make plugin` runs), created, enabled,
// used for bridge networks (mynet IPAM and Docker's), macvlan on a veth of
// our own, refused disable/set while networks exist, `disable -f` + `set` +
// `enable`, upgrade to a rebuilt plugin with networks and addresses intact, a
// dockerd restart with the plugin enabled, and install + upgrade from a
// distribution registry on 127.0.0.1 with settings on the install line. The
// plugin's rootfs is also checked on its own: it picks the host's iptables
// backend (nf_tables or legacy), in a network namespace of its own.
//
// Names: plugins mynetpt:latest and mynetpr:latest (instance names
// mit-pt / mit-pr, so their links never carry the mark of another mynet),
// networks and containers mit-pt-*, links mit-ptv0/1. State lives in
// temporary folders, never /var/lib/mynet.
//
// Knobs: MYNET_IT_REGISTRY=path uses a prebuilt distribution registry binary;
// otherwise it is built once with `go install` (a few minutes) into
// $HOME/.cache/mynet-it/.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	ptPluginName = "mynetpt" // plugin made with build.sh, driver mynetpt:latest
	ptRegAlias   = "mynetpr" // plugin installed from the registry
	ptRegistry   = "github.com/distribution/distribution/v3/cmd/registry@v3.1.2"
)

// ptBuild runs integration/plugin/build.sh with args and returns its output
// (the script logs how long each step took).
func ptBuild(t testing.TB, args ...string) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot, "integration/plugin/build.sh")}, args...)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "DOCKER="+dockerBin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("build.sh %s (%s):\n%s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(string(out)))
	return string(out)
}

// ptDockerRun is the folder holding the API socket (docker.sock) of the
// engine under test, for the plugin's docker-run mount: the host's /run (the
// plugin-config default), or a private engine's own folder, since that
// engine's /run is the host's and its socket lives elsewhere.
func ptDockerRun() string {
	if inEngine != nil {
		return filepath.Dir(inEngine.Socket)
	}
	return "/run"
}

// ptPluginInfo is the part of `docker plugin inspect` the tests read.
type ptPluginInfo struct {
	ID              string `json:"Id"`
	Name            string
	Enabled         bool
	PluginReference string
	Settings        struct {
		Env    []string
		Args   []string
		Mounts []struct {
			Name        string
			Source      *string
			Destination string
		}
	}
	Config struct {
		Entrypoint []string
		Interface  struct {
			Types  []string
			Socket string
		}
		Network struct{ Type string }
		Linux   struct{ Capabilities []string }
	}
}

func (p ptPluginInfo) env(key string) (string, bool) {
	for _, kv := range p.Settings.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func (p ptPluginInfo) mountSource(name string) string {
	for _, m := range p.Settings.Mounts {
		if m.Name == name && m.Source != nil {
			return *m.Source
		}
	}
	return ""
}

func ptInspect(t testing.TB, ref string) ptPluginInfo {
	t.Helper()
	return mustInspect[ptPluginInfo](t, "plugin", "inspect", ref)
}

// ptRemovePlugin force-disables and removes a plugin if it exists.
func ptRemovePlugin(t testing.TB, ref string) {
	t.Helper()
	if _, err := dockerCmd("plugin", "inspect", ref); err != nil {
		return
	}
	_, _ = dockerCmd("plugin", "disable", "-f", ref)
	if out, err := dockerCmd("plugin", "rm", "-f", ref); err != nil {
		t.Errorf("cleanup: docker plugin rm -f %s: %v\n%s", ref, err, out)
	}
}

// ptTimed runs a docker command that must succeed and returns how long it took.
func ptTimed(t testing.TB, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	mustDocker(t, args...)
	return time.Since(start)
}

// ptFreeLowPort returns a TCP port below 1024 nothing listens on right now:
// holding one needs CAP_NET_BIND_SERVICE.
func ptFreeLowPort(t testing.TB) int {
	t.Helper()
	for p := 81; p < 1024; p++ {
		if l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free TCP port below 1024")
	return 0
}

// ptPingAll checks that every container of ctrs reaches every other one on netName.
func ptPingAll(t *testing.T, netName string, ctrs ...string) {
	t.Helper()
	for _, a := range ctrs {
		for _, b := range ctrs {
			if a == b {
				continue
			}
			if err := ping(t, a, containerIP(t, b, netName)); err != nil {
				t.Errorf("%s -> %s on %s: %v", a, b, netName, err)
			}
		}
	}
}

// ptPluginLogSince returns the dockerd log lines of plugin id written after
// byte offset off (dockerd copies a managed plugin's stderr into its log), or
// an error if the log is not where integration/setup.sh puts it.
func ptPluginLogSince(id string, off int64) ([]string, error) {
	f, err := os.Open(dockerdLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "plugin="+id) {
			lines = append(lines, sc.Text())
		}
	}
	return lines, sc.Err()
}

func ptLogSize() int64 {
	fi, err := os.Stat(dockerdLog)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ptAddrs maps container -> IPv4 address on netName.
func ptAddrs(t *testing.T, netName string, ctrs ...string) map[string]netip.Addr {
	t.Helper()
	m := map[string]netip.Addr{}
	for _, c := range ctrs {
		m[c] = containerIP(t, c, netName)
	}
	return m
}

// ptMustDiffer fails if a is one of the addresses in m.
func ptMustDiffer(t *testing.T, what string, a netip.Addr, m map[string]netip.Addr) {
	t.Helper()
	for c, b := range m {
		if a == b {
			t.Errorf("%s got %s, the address of %s: handed out twice", what, a, c)
		}
	}
}

// ptSameAddrs fails unless every container still has the address in want.
func ptSameAddrs(t *testing.T, when, netName string, want map[string]netip.Addr) {
	t.Helper()
	for c, a := range want {
		if got := containerIP(t, c, netName); got != a {
			t.Errorf("%s: %s has %s on %s, had %s", when, c, got, netName, a)
		}
	}
}

// ptSetup creates the plugin with build.sh, points it at a temporary state
// directory, gives it an instance name of its own and enables it.
func ptSetup(t *testing.T, tmp string) (ref string) {
	t.Helper()
	ref = ptCreate(t, tmp)
	took := ptTimed(t, "plugin", "enable", ref)
	t.Logf("MEASURED docker plugin enable %s: %s", ref, took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("enable took %s: dockerd gives a managed plugin ~10 s to listen", took)
	}
	return ref
}

// ptCreate is ptSetup without the enable: the plugin is created, with its
// state in tmp/state, and stays disabled for more settings. It is removed
// when the test ends.
func ptCreate(t *testing.T, tmp string) (ref string) {
	t.Helper()
	ref = ptPluginName + ":latest"
	if _, err := dockerCmd("plugin", "inspect", ref); err == nil {
		t.Logf("plugin %s left by an earlier run: removing it", ref)
		ptRemovePlugin(t, ref)
	}
	t.Cleanup(func() { ptRemovePlugin(t, ref) })
	ptBuild(t, "--name", ptPluginName, "--tag", "latest")
	state := filepath.Join(tmp, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	mustDocker(t, "plugin", "set", ref, "state.source="+state, "MYNET_NAME=mit-pt", "MYNET_LOG_LEVEL=info",
		"docker-run.source="+ptDockerRun())
	return ref
}

func TestPluginManaged(t *testing.T) {
	withPlugin(t) // the suite's legacy plugin runs too: the two must not disturb each other
	tmp := t.TempDir()
	ref := ptSetup(t, tmp)

	info := ptInspect(t, ref)
	if !info.Enabled {
		t.Fatalf("%s not enabled after docker plugin enable", ref)
	}
	wantTypes := "docker.networkdriver/1.0 docker.ipamdriver/1.0"
	if got := strings.Join(info.Config.Interface.Types, " "); got != wantTypes || info.Config.Network.Type != "host" {
		t.Errorf("config: interface types %q network %q, want %q and host", got, info.Config.Network.Type, wantTypes)
	}
	if info.mountSource("state") != filepath.Join(tmp, "state") {
		t.Errorf("state mount source = %q, want %s", info.mountSource("state"), filepath.Join(tmp, "state"))
	}

	// Networks and containers that several steps use belong to the test,
	// not to a subtest (a subtest's cleanup runs when it ends).
	port := freePort(t)
	br, mv := "mit-pt-br", "mit-pt-mv"
	ctrs := []string{"mit-pt-c1", "mit-pt-web"}
	brNet := netCreate(t, br, "-d", ref, "--ipam-driver", ref)
	runContainer(t, "mit-pt-c1", "--network", br)
	webToken := newToken("managed")
	runWebServer(t, "mit-pt-web", webToken, "--network", br, "-p", fmt.Sprintf("%d:80", port))
	// macvlan parent: a veth pair of our own (never eth0).
	addLink(t, "mit-ptv0", "type", "veth", "peer", "name", "mit-ptv1")
	for _, l := range []string{"mit-ptv0", "mit-ptv1"} {
		mustRun(t, "ip", "link", "set", l, "up")
	}
	mvSub := freeSubnet(t, "10.97.20.0/24")
	netCreate(t, mv, "-d", ref, "--ipam-driver", ref, "-o", "backend=macvlan", "-o", "parent=mit-ptv0", "--subnet", mvSub.String())
	runContainer(t, "mit-pt-m1", "--network", mv)
	runContainer(t, "mit-pt-m2", "--network", mv)

	ok := t.Run("BridgeWithMynetIPAM", func(t *testing.T) {
		if brNet.Driver != ref || brNet.IPAM.Driver != ref {
			t.Errorf("network %s: driver %q IPAM %q, want %s for both", br, brNet.Driver, brNet.IPAM.Driver, ref)
		}
		if len(brNet.Subnets()) != 1 {
			t.Fatalf("network %s: subnets %v, want one from mynet's default pools", br, brNet.Subnets())
		}
		for _, c := range ctrs {
			if a := containerIP(t, c, br); !brNet.Subnets()[0].Contains(a) {
				t.Errorf("%s has %s, outside the network's %s", c, a, brNet.Subnets()[0])
			}
		}
		ptPingAll(t, br, ctrs...)
		// 127.0.0.1 -> container needs route_localnet on the bridge: a
		// sysctl the plugin can only write after remounting /proc/sys.
		bridge := "mn-" + brNet.ID[:12]
		if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + bridge + "/route_localnet"); err != nil || strings.TrimSpace(string(b)) != "1" {
			t.Errorf("route_localnet on %s = %q (%v), want 1", bridge, b, err)
		}
		if err := httpGetHas(netip.AddrPortFrom(loopback, uint16(port)), webToken, 10*time.Second); err != nil {
			t.Errorf("published port from the host: %v", err)
		}
		// A host port below 1024 (-p 80:80 and the like): the plugin holds
		// it, which takes CAP_NET_BIND_SERVICE (plugin-config.json).
		low := ptFreeLowPort(t)
		lowToken := newToken("low")
		runWebServer(t, "mit-pt-low", lowToken, "--network", br, "-p", fmt.Sprintf("%d:80", low))
		if err := httpGetHas(netip.AddrPortFrom(loopback, uint16(low)), lowToken, 10*time.Second); err != nil {
			t.Errorf("published host port %d (below 1024): %v", low, err)
		}
	})
	if !ok {
		t.Fatalf("the plugin does not serve a bridge network; later steps would only repeat that")
	}

	t.Run("BridgeWithDockerIPAM", func(t *testing.T) {
		sub := freeSubnet(t, "10.97.10.0/24")
		name := "mit-pt-dipam"
		n := netCreate(t, name, "-d", ref, "--subnet", sub.String())
		if n.IPAM.Driver != "default" {
			t.Errorf("IPAM driver %q, want default", n.IPAM.Driver)
		}
		runContainer(t, "mit-pt-d1", "--network", name)
		runContainer(t, "mit-pt-d2", "--network", name, "--ip", nthAddr(sub, 200).String())
		if got := containerIP(t, "mit-pt-d2", name); got != nthAddr(sub, 200) {
			t.Errorf("--ip: got %s, want %s", got, nthAddr(sub, 200))
		}
		ptPingAll(t, name, "mit-pt-d1", "mit-pt-d2")
	})

	t.Run("MacvlanOnVeth", func(t *testing.T) {
		for _, c := range []string{"mit-pt-m1", "mit-pt-m2"} {
			if a := containerIP(t, c, mv); !mvSub.Contains(a) {
				t.Errorf("%s has %s, outside %s", c, a, mvSub)
			}
		}
		ptPingAll(t, mv, "mit-pt-m1", "mit-pt-m2")
		// The container's interface is a macvlan of our veth.
		out, err := exec.Command("ip", "-d", "link", "show", "mit-ptv0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link show mit-ptv0: %v", err)
		}
		if !strings.Contains(string(out), "mit-ptv0") {
			t.Errorf("parent link missing: %s", out)
		}
	})

	t.Run("DisableAndSetRefusedWhileInUse", func(t *testing.T) {
		out, err := docker(t, "plugin", "disable", ref)
		if err == nil || !strings.Contains(out, "in use") {
			t.Errorf("docker plugin disable with networks: err=%v output %q, want refused with \"in use\"", err, out)
		}
		out, err = docker(t, "plugin", "set", ref, "MYNET_LOG_LEVEL=debug")
		if err == nil || !strings.Contains(out, "disable plugin before setting") {
			t.Errorf("docker plugin set while enabled: err=%v output %q, want refused", err, out)
		}
		out, err = docker(t, "plugin", "rm", ref)
		if err == nil {
			t.Errorf("docker plugin rm while enabled and in use succeeded: %q", out)
		}
		if !ptInspect(t, ref).Enabled {
			t.Fatalf("plugin disabled after a refused disable")
		}
	})

	t.Run("ForceDisableSetEnable", func(t *testing.T) {
		before := ptAddrs(t, br, ctrs...)
		took := ptTimed(t, "plugin", "disable", "-f", ref)
		t.Logf("MEASURED docker plugin disable -f with networks: %s", took.Round(time.Millisecond))
		// Kernel state stays: running containers still talk while the plugin is down.
		ptPingAll(t, br, ctrs...)
		if out, err := tryRunContainer(t, "mit-pt-while-off", "--network", br); err == nil {
			t.Errorf("docker run on %s with the plugin disabled succeeded: %s", br, out)
		}
		mustDocker(t, "plugin", "set", ref, "MYNET_LOG_LEVEL=debug", "MYNET_RECONCILE_EVERY=2s")
		off := ptLogSize()
		took = ptTimed(t, "plugin", "enable", ref)
		t.Logf("MEASURED docker plugin enable (state with networks): %s", took.Round(time.Millisecond))
		info := ptInspect(t, ref)
		if v, _ := info.env("MYNET_LOG_LEVEL"); v != "debug" {
			t.Errorf("MYNET_LOG_LEVEL = %q after docker plugin set, want debug", v)
		}
		runContainer(t, "mit-pt-c3", "--network", br)
		ptMustDiffer(t, "a container started after the re-enable", containerIP(t, "mit-pt-c3", br), before)
		ptPingAll(t, br, append(ctrs, "mit-pt-c3")...)
		ptSameAddrs(t, "after disable -f / enable", br, before)
		// The setting took effect: the plugin logs one debug line per request.
		if lines, err := ptPluginLogSince(info.ID, off); err != nil {
			t.Logf("dockerd log %s not readable (%v): not checking the debug lines", dockerdLog, err)
		} else if n := ptCount(lines, "level=DEBUG"); n == 0 {
			t.Errorf("no DEBUG line from plugin %s in %s after MYNET_LOG_LEVEL=debug (%d lines of it)", info.ID[:12], dockerdLog, len(lines))
		} else {
			t.Logf("%d DEBUG lines from the plugin after the setting", n)
		}
	})

	// The plugin reaches Docker's API through the docker-run mount its config
	// declares: its background reconcile (every 2 s since the step above)
	// re-creates a bridge deleted by hand, which needs Docker's view.
	t.Run("ReconcileThroughTheDockerMount", func(t *testing.T) {
		info := ptInspect(t, ref)
		if src := info.mountSource("docker-run"); src != ptDockerRun() {
			t.Errorf("docker-run mount source %q, want %s", src, ptDockerRun())
		}
		off := ptLogSize()
		bridge := "mn-" + brNet.ID[:12]
		if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
			t.Fatalf("ip link del %s: %v\n%s", bridge, err, out)
		}
		if err := eventually(60*time.Second, func() error {
			if err := exec.Command("ip", "link", "show", bridge).Run(); err != nil {
				return fmt.Errorf("bridge %s not back", bridge)
			}
			return ping(t, "mit-pt-c1", containerIP(t, "mit-pt-web", br))
		}); err != nil {
			lines, _ := ptPluginLogSince(info.ID, off)
			t.Fatalf("the background reconcile did not repair the deleted bridge: %v\nplugin log:\n%s", err, strings.Join(lines, "\n"))
		}
		lines, err := ptPluginLogSince(info.ID, off)
		if err != nil {
			t.Logf("dockerd log %s not readable (%v): not checking the repair line", dockerdLog, err)
		} else if ptCount(lines, "repaired: links network "+brNet.ID[:12]) != 1 {
			t.Errorf("no single `repaired: links` line from the plugin:\n%s", strings.Join(lines, "\n"))
		}
	})

	t.Run("UpgradeToRebuiltPlugin", func(t *testing.T) {
		old := ptInspect(t, ref)
		before := ptAddrs(t, br, ctrs...)
		netBefore := netInspect(t, br)
		start := time.Now()
		out := ptBuild(t, "--name", ptPluginName, "--tag", "latest", "--replace")
		t.Logf("MEASURED rebuild + replace (disable -f, rm -f, create, settings, enable): %s", time.Since(start).Round(100*time.Millisecond))
		if !strings.Contains(out, "kept setting state.source=") {
			t.Errorf("build.sh --replace did not carry the state mount over:\n%s", out)
		}
		now := ptInspect(t, ref)
		if now.ID == old.ID {
			t.Errorf("plugin id unchanged (%s): not replaced", now.ID[:12])
		}
		if !now.Enabled {
			t.Fatalf("replaced plugin not enabled")
		}
		for _, k := range []string{"MYNET_LOG_LEVEL", "MYNET_NAME"} {
			a, _ := old.env(k)
			b, _ := now.env(k)
			if a != b {
				t.Errorf("%s = %q after the upgrade, was %q", k, b, a)
			}
		}
		if now.mountSource("state") != old.mountSource("state") {
			t.Errorf("state mount %q after the upgrade, was %q", now.mountSource("state"), old.mountSource("state"))
		}
		if n := netInspect(t, br); n.ID != netBefore.ID || fmt.Sprint(n.Subnets()) != fmt.Sprint(netBefore.Subnets()) {
			t.Errorf("network changed: %s %v, was %s %v", n.ID, n.Subnets(), netBefore.ID, netBefore.Subnets())
		}
		ptSameAddrs(t, "after the upgrade", br, before)
		ptPingAll(t, br, ctrs...)
		if err := httpGetHas(netip.AddrPortFrom(loopback, uint16(port)), webToken, 10*time.Second); err != nil {
			t.Errorf("published port after the upgrade: %v", err)
		}
		runContainer(t, "mit-pt-c4", "--network", br)
		ptMustDiffer(t, "a container started after the upgrade", containerIP(t, "mit-pt-c4", br), before)
		ptPingAll(t, br, "mit-pt-c4", "mit-pt-c1")
		ptPingAll(t, mv, "mit-pt-m1", "mit-pt-m2")
	})

	t.Run("DockerdRestart", func(t *testing.T) {
		needDockerdAlone(t, ptPluginName+":latest", ptRegAlias+":latest")
		defer ensureDockerd(t)
		name := "mit-pt-rs"
		netCreate(t, name, "-d", ref, "--ipam-driver", ref)
		runContainer(t, "mit-pt-r1", "--network", name, "--restart", "always")
		runContainer(t, "mit-pt-r2", "--network", name, "--restart", "always")
		before := ptAddrs(t, name, "mit-pt-r1", "mit-pt-r2")
		ptPingAll(t, name, "mit-pt-r1", "mit-pt-r2")

		stopDockerd(t, dockerdPID(t))
		start := time.Now()
		newPid, err := startDockerd()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MEASURED dockerd (pid %d) answered %.1fs after start", newPid, time.Since(start).Seconds())
		if !ptInspect(t, ref).Enabled {
			t.Fatalf("%s not enabled after the dockerd restart", ref)
		}
		for _, c := range []string{"mit-pt-r1", "mit-pt-r2"} {
			if err := waitRunning(c, 30*time.Second); err != nil {
				t.Fatalf("--restart always container not running 30 s after dockerd answered: %v", err)
			}
		}
		t.Logf("containers with --restart always running %.1fs after dockerd start", time.Since(start).Seconds())
		after := ptAddrs(t, name, "mit-pt-r1", "mit-pt-r2")
		t.Logf("addresses before %v, after %v", before, after)
		ptPingAll(t, name, "mit-pt-r1", "mit-pt-r2")
		// The driver resolves for new work too.
		runContainer(t, "mit-pt-r3", "--network", name)
		ptMustDiffer(t, "a container started after the dockerd restart", containerIP(t, "mit-pt-r3", name), after)
		ptPingAll(t, name, "mit-pt-r3", "mit-pt-r1")
		// Containers without a restart policy were stopped with dockerd;
		// starting one again gives it a working interface on our network.
		mustDocker(t, "start", "mit-pt-c1")
		if err := ping(t, "mit-pt-c1", containerIP(t, "mit-pt-r1", name)); err == nil {
			t.Errorf("mit-pt-c1 (network %s) reaches %s on %s: networks are not isolated", br, "mit-pt-r1", name)
		}
		mustDocker(t, "start", "mit-pt-web")
		ptPingAll(t, br, ctrs...)
	})

	t.Run("RegistryInstallAndUpgrade", func(t *testing.T) {
		ptRegistryTest(t)
	})
}

func ptCount(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------- registry

// ptRegistryBin returns a distribution registry binary: MYNET_IT_REGISTRY, or
// one built with go install into the user's cache (once).
func ptRegistryBin(t *testing.T) string {
	t.Helper()
	bin, err := registryBin(t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// registryBin is ptRegistryBin without a test, for the engine set-up: the
// build needs the Go module proxy, which an engine's namespace cannot reach.
func registryBin(logf func(string, ...any)) (string, error) {
	if p := os.Getenv("MYNET_IT_REGISTRY"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	_, version, _ := strings.Cut(ptRegistry, "@")
	dir := filepath.Join(cache, "mynet-it", "distribution-registry-"+version)
	bin := filepath.Join(dir, "registry")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	logf("building %s into %s (once; a few minutes)", ptRegistry, dir)
	start := time.Now()
	cmd := exec.Command("go", "install", ptRegistry)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", ptRegistry, err, out)
	}
	logf("registry built in %s", time.Since(start).Round(time.Second))
	return bin, nil
}

// ptStartRegistry runs a registry on 127.0.0.1 (Docker treats 127.0.0.0/8 as
// an insecure registry by default: plain HTTP is fine) and returns host:port.
func ptStartRegistry(t *testing.T) string {
	t.Helper()
	bin := ptRegistryBin(t)
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "REGISTRY_HTTP_SECRET=mynet-integration-test")
	done, err := startChild(cmd, func(error) { logf.Close() })
	if err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(func() { stopChild(cmd, done) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s not answering: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ptPushed builds the plugin as REG/mit-mynet:TAG, pushes it and removes the
// local copy (so the install really pulls).
func ptPushed(t *testing.T, reg, tag string) string {
	t.Helper()
	remote := reg + "/mit-mynet:" + tag
	t.Cleanup(func() { ptRemovePlugin(t, remote) })
	ptBuild(t, "--name", reg+"/mit-mynet", "--tag", tag)
	took := ptTimed(t, "plugin", "push", remote)
	t.Logf("MEASURED docker plugin push %s: %s", remote, took.Round(time.Millisecond))
	mustDocker(t, "plugin", "rm", remote)
	return remote
}

func ptRegistryTest(t *testing.T) {
	reg := ptStartRegistry(t)
	v1 := ptPushed(t, reg, "v1")
	alias := ptRegAlias + ":latest"
	t.Cleanup(func() { ptRemovePlugin(t, alias) })
	ptRemovePlugin(t, alias)

	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	pool := freeSubnet(t, "10.96.0.0/16")
	took := ptTimed(t, "plugin", "install", "--grant-all-permissions", "--alias", alias, v1,
		"state.source="+state, "MYNET_NAME=mit-pr", "MYNET_LOG_LEVEL=debug", "MYNET_DEFAULT_POOLS="+pool.String()+":24",
		"docker-run.source="+ptDockerRun())
	t.Logf("MEASURED docker plugin install (pull + enable) %s: %s", v1, took.Round(time.Millisecond))
	info := ptInspect(t, alias)
	if !info.Enabled || info.PluginReference != v1 {
		t.Fatalf("installed plugin: enabled %v reference %q, want enabled from %s", info.Enabled, info.PluginReference, v1)
	}
	for k, want := range map[string]string{"MYNET_NAME": "mit-pr", "MYNET_LOG_LEVEL": "debug", "MYNET_DEFAULT_POOLS": pool.String() + ":24"} {
		if got, _ := info.env(k); got != want {
			t.Errorf("%s = %q, want %q (given on the install line)", k, got, want)
		}
	}
	if got := info.mountSource("state"); got != state {
		t.Errorf("state mount %q, want %q", got, state)
	}

	name := "mit-pt-reg"
	n := netCreate(t, name, "-d", alias, "--ipam-driver", alias)
	if len(n.Subnets()) != 1 || !pool.Contains(n.Subnets()[0].Addr()) {
		t.Errorf("pool %v not cut from MYNET_DEFAULT_POOLS=%s:24", n.Subnets(), pool)
	}
	runContainer(t, "mit-pt-g1", "--network", name)
	runContainer(t, "mit-pt-g2", "--network", name)
	ptPingAll(t, name, "mit-pt-g1", "mit-pt-g2")
	before := ptAddrs(t, name, "mit-pt-g1", "mit-pt-g2")

	// Upgrade: v2 in the registry; upgrade needs the plugin disabled, and
	// disable needs -f while networks use it.
	v2 := ptPushed(t, reg, "v2")
	if out, err := docker(t, "plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", alias, v2); err == nil {
		t.Errorf("docker plugin upgrade of an enabled plugin succeeded: %s", out)
	}
	start := time.Now()
	mustDocker(t, "plugin", "disable", "-f", alias)
	mustDocker(t, "plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", alias, v2)
	// Docker 20.10 keeps Settings.Mounts over an upgrade but starts the
	// plugin with the new config's default mount source: set it again.
	if src := ptConfigMountSource(ptInspect(t, alias).ID, "state"); src != state {
		t.Logf("Docker reset the state mount to %q on upgrade (settings still say %q): setting it again", src, state)
	}
	mustDocker(t, "plugin", "set", alias, "state.source="+state)
	if src := ptConfigMountSource(ptInspect(t, alias).ID, "state"); src != "" && src != state {
		t.Errorf("after docker plugin set, the mount dockerd uses is %q, want %q", src, state)
	}
	mustDocker(t, "plugin", "enable", alias)
	t.Logf("MEASURED disable -f + upgrade + set + enable: %s", time.Since(start).Round(time.Millisecond))
	info = ptInspect(t, alias)
	if info.PluginReference != v2 || !info.Enabled {
		t.Fatalf("after upgrade: reference %q enabled %v, want %s enabled", info.PluginReference, info.Enabled, v2)
	}
	if got, _ := info.env("MYNET_LOG_LEVEL"); got != "debug" {
		t.Errorf("MYNET_LOG_LEVEL = %q after the upgrade, want debug (kept)", got)
	}
	ptSameAddrs(t, "after the registry upgrade", name, before)
	ptPingAll(t, name, "mit-pt-g1", "mit-pt-g2")
	runContainer(t, "mit-pt-g3", "--network", name)
	ptMustDiffer(t, "a container started after the registry upgrade", containerIP(t, "mit-pt-g3", name), before)
	ptPingAll(t, name, "mit-pt-g3", "mit-pt-g1")
}

// ptConfigMountSource reads the mount source dockerd will use for the named
// mount from its plugin store (/var/lib/docker/plugins/<id>/config.json), or
// "" if that file is not readable.
func ptConfigMountSource(id, name string) string {
	b, err := os.ReadFile(filepath.Join("/var/lib/docker/plugins", id, "config.json"))
	if err != nil {
		return ""
	}
	var f struct {
		Plugin struct {
			Config struct {
				Mounts []struct {
					Name   string
					Source *string
				}
			}
		} `json:"plugin"`
	}
	if json.Unmarshal(b, &f) != nil {
		return ""
	}
	for _, m := range f.Plugin.Config.Mounts {
		if m.Name == name && m.Source != nil {
			return *m.Source
		}
	}
	return ""
}

// ---------------------------------------------------------------- rootfs alone

// The test binary doubles as a tiny client for TestPluginRootfsIptablesBackend
// (no curl needed): with MYNET_PT_POST_SOCKET set it POSTs its stdin to
// MYNET_PT_POST_PATH on that unix socket, prints the answer and exits.
func init() {
	sock := os.Getenv("MYNET_PT_POST_SOCKET")
	if sock == "" {
		return
	}
	resp, err := unixHTTPClient(sock, 30*time.Second).Post("http://plugin"+os.Getenv("MYNET_PT_POST_PATH"), "application/json", os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "post:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("HTTP %d %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		os.Exit(1)
	}
	os.Exit(0)
}

// The plugin's rootfs picks the host's iptables backend: run its entrypoint
// (chroot) in a fresh network + mount namespace, with rules of "the host" in
// one backend, and check where mynet writes its chains. Also after a
// "reboot" (no rules anywhere): the backend detected before is kept.
func TestPluginRootfsIptablesBackend(t *testing.T) {
	tmp := t.TempDir()
	pdir := filepath.Join(tmp, "plugin")
	ptBuild(t, "--no-create", "--dir", pdir)
	rootfs := filepath.Join(pdir, "rootfs")
	for _, p := range []string{"usr/bin/mynet", "usr/lib/mynet/entrypoint.sh", "usr/lib/mynet/iptables-nft/iptables", "usr/lib/mynet/iptables-legacy/ip6tables-restore"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Fatalf("rootfs: %v", err)
		}
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	// run starts the entrypoint in a new netns with hostRules (iptables
	// commands run first, as dockerd on that host would have), creates a
	// bridge network over the socket, and reports the entrypoint's log and
	// how many MYNET rules each backend holds.
	const script = `set -eu
R=$1; E=$2; shift 2
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/run"
mkdir -p "$R/run/docker/plugins"
ip link set lo up
for c in "$@"; do chroot "$R" sh -c "$c"; done
env $E MYNET_NAME=mit-ptns chroot "$R" /usr/lib/mynet/entrypoint.sh >"$R/tmp/entrypoint.log" 2>&1 &
pid=$!
i=0; while [ ! -S "$R/run/docker/plugins/mynet.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
id=$(printf 'c0ffee%058d' 7)
echo '{"NetworkID":"'$id'","Options":{"com.docker.network.generic":{}},"IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.99.80.0/24","Gateway":"10.99.80.1/24"}]}' |
  MYNET_PT_POST_SOCKET="$R/run/docker/plugins/mynet.sock" MYNET_PT_POST_PATH=/NetworkDriver.CreateNetwork "$PT_SELF"
echo "legacy=$(chroot "$R" iptables-legacy-save 2>/dev/null | grep -c MYNET || true)"
echo "nft=$(chroot "$R" iptables-nft-save 2>/dev/null | grep -c MYNET || true)"
kill -TERM $pid; wait $pid || true
cat "$R/tmp/entrypoint.log"
`
	run := func(t *testing.T, env string, hostRules ...string) string {
		t.Helper()
		args := append([]string{"-n", "-m", "--propagation", "private", "sh", "-c", script, "sh", rootfs, env}, hostRules...)
		cmd := exec.Command("unshare", args...)
		cmd.Env = append(os.Environ(), "PT_SELF="+self)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("entrypoint in a fresh netns: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return string(out)
	}
	counts := regexp.MustCompile(`(?m)^legacy=(\d+)\s+nft=(\d+)$`)
	check := func(t *testing.T, out, want string) {
		t.Helper()
		m := counts.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no rule counts in the output")
		}
		legacy, _ := strconv.Atoi(m[1])
		nft, _ := strconv.Atoi(m[2])
		if !strings.Contains(out, "iptables backend: "+want) {
			t.Errorf("entrypoint did not pick %s", want)
		}
		if (want == "legacy") != (legacy > 0 && nft == 0) || (want == "nft") != (nft > 0 && legacy == 0) {
			t.Errorf("MYNET rules: legacy %d, nf_tables %d; want them only in %s", legacy, nft, want)
		}
	}
	state := filepath.Join(rootfs, "var/lib/mynet")
	reset := func() {
		ents, _ := os.ReadDir(state)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(state, e.Name()))
		}
	}
	t.Run("LegacyHost", func(t *testing.T) {
		reset()
		check(t, run(t, "", "iptables-legacy -t nat -N DOCKER", "iptables-legacy -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"), "legacy")
		// Host rebooted: no rules anywhere yet; the answer found before holds.
		out := run(t, "")
		check(t, out, "legacy")
		if !strings.Contains(out, "detected earlier") {
			t.Errorf("no rules anywhere, but the remembered backend was not used")
		}
	})
	t.Run("NftHost", func(t *testing.T) {
		reset()
		check(t, run(t, "", "iptables-nft -t nat -N DOCKER", "iptables-nft -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"), "nft")
	})
	t.Run("ForcedBySetting", func(t *testing.T) {
		reset()
		// MYNET_IPTABLES=nft wins over the legacy rules found.
		check(t, run(t, "MYNET_IPTABLES=nft", "iptables-legacy -t nat -N DOCKER", "iptables-legacy -t nat -A PREROUTING -j DOCKER"), "nft")
	})
	t.Run("BadSetting", func(t *testing.T) {
		reset()
		out, err := exec.Command("unshare", "-n", "-m", "--propagation", "private", "sh", "-c",
			`mount -t proc proc "$1/proc" && MYNET_IPTABLES=bogus chroot "$1" /usr/lib/mynet/entrypoint.sh; echo "exit=$?"`, "sh", rootfs).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "exit=2") || !strings.Contains(string(out), "use auto, nft or legacy") {
			t.Errorf("MYNET_IPTABLES=bogus: want exit 2 and a message, got %v\n%s", err, out)
		}
	})
}
