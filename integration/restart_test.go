//go:build integration

package integration

// Restarts keep running containers connected: the plugin killed or stopped
// and started again, a simulated host reboot (our bridge and chains deleted
// while the plugin is down), and a dockerd restart (last test: it restarts
// the engine every other test depends on).

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// restartSetup is a network on our IPAM with a web server publishing a
// host port and a client, checked before the disruption.
type restartSetup struct {
	net          NetworkInfo
	srv, cli     string
	srvIP, cliIP netip.Addr
	port         int
	token        string
	host         netip.Addr
}

func prepareRestart(t *testing.T, lc *leakCheck, name string, restartAlways bool) *restartSetup {
	t.Helper()
	s := &restartSetup{srv: name + "-srv", cli: name + "-cli", host: hostIPv4(t)}
	s.net = lc.net(name, mynetNetArgs([]string{"--ipam-driver", pluginName}, "--subnet", freeV4Subnet(t, 110).String())...)
	args := []string{"--network", name}
	if restartAlways {
		args = append(args, "--restart", "always")
	}
	s.port, s.token = runPublishedWebServer(t, s.srv, "", args...)
	runContainer(t, s.cli, args...)
	s.srvIP, s.cliIP = containerIP(t, s.srv, name), containerIP(t, s.cli, name)
	if err := s.check(t, "before", 10*time.Second); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	return s
}

// check: both containers reach each other, the port answers from the host
// address and 127.0.0.1 and from the client (hairpin).
func (s *restartSetup) check(t *testing.T, when string, d time.Duration) error {
	t.Helper()
	var errs []string
	pingWithin := func(from string, to netip.Addr) {
		var out string
		err := eventually(d, func() error {
			var err error
			out, err = dockerExec(from, "ping", "-c", "1", "-W", "1", to.String())
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: ping %s from %s: %v\n%s", when, to, from, err, out))
		}
	}
	pingWithin(s.cli, s.srvIP)
	pingWithin(s.srv, s.cliIP)
	for _, a := range []netip.Addr{s.host, loopback} {
		if err := httpGetHas(netip.AddrPortFrom(a, uint16(s.port)), s.token, d); err != nil {
			errs = append(errs, when+": published port: "+err.Error())
		}
	}
	if err := fetchFromHas(s.cli, s.host, s.port, s.token); err != nil {
		errs = append(errs, when+": hairpin: "+err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// afterRestart: everything works again, the host port is held again (a
// second claim fails), and new containers get new, distinct addresses.
func (s *restartSetup) afterRestart(t *testing.T, name string) {
	t.Helper()
	if err := s.check(t, "after the restart", 20*time.Second); err != nil {
		t.Error(err)
	}
	if !portHeld(t, "tcp", s.port) {
		t.Errorf("after the restart, host port %d/tcp is not held", s.port)
	}
	out, err := tryRunContainer(t, name+"-dup", "--network", name, "-p", fmt.Sprintf("%d:80", s.port))
	if err == nil {
		t.Errorf("after the restart, a new container got host port %d of a running one", s.port)
	} else if !strings.Contains(out, "already in use") {
		t.Errorf("after the restart, a second claim of port %d failed without %q:\n%s", s.port, "already in use", out)
	}
	_, _ = dockerCmd("rm", "-f", name+"-dup")

	gw := netip.MustParseAddr(containerNet(t, s.srv, name).Gateway)
	seen := map[netip.Addr]string{s.srvIP: s.srv, s.cliIP: s.cli, gw: "gateway"}
	for i := 0; i < 3; i++ {
		ctr := fmt.Sprintf("%s-new%d", name, i)
		runContainer(t, ctr, "--network", name)
		ip := containerIP(t, ctr, name)
		if other, dup := seen[ip]; dup {
			t.Errorf("after the restart, %s got %s, already used by %s", ctr, ip, other)
		}
		seen[ip] = ctr
		expectPing(t, "after the restart, new container", ctr, s.srvIP)
	}

	// What the restarted plugin restored is also what it removes.
	if err := stopUnpublishes(t, s.srv, "tcp", s.port); err != nil {
		t.Errorf("after the restart: %v", err)
	}
}

// Plugin crash (SIGKILL) and plugin stop (SIGTERM), then start.
func TestRestartPlugin(t *testing.T) {
	for i, how := range []string{"SIGKILL", "SIGTERM"} {
		t.Run(how, func(t *testing.T) {
			p := withPlugin(t)
			defer ensurePlugin(t)
			lc := assertNoBridgeLeftovers(t)
			name := fmt.Sprintf("mit-rst-%d", i)
			s := prepareRestart(t, lc, name, false)
			var err error
			if how == "SIGKILL" {
				err = p.Kill()
			} else {
				err = p.Stop()
			}
			if err != nil {
				t.Fatalf("%s the plugin: %v", how, err)
			}
			// The data plane does not depend on the plugin process.
			expectPing(t, "while the plugin is down", s.cli, s.srvIP)
			if err := p.Start(); err != nil {
				t.Fatalf("start the plugin again: %v", err)
			}
			s.afterRestart(t, name)
		})
	}
}

// A host reboot, simulated: with the plugin down, our bridge and all our
// iptables/ip6tables chains and jumps disappear; the containers (and their
// veths) stay. Starting the plugin must bring their network back.
func TestRestartHostReboot(t *testing.T) {
	p := withPlugin(t)
	defer ensurePlugin(t)
	lc := assertNoBridgeLeftovers(t)
	const name = "mit-reboot"
	s := prepareRestart(t, lc, name, false)
	br := mynetBridge(s.net)
	var hostIfs []string
	for _, c := range []string{s.srv, s.cli} {
		hostIfs = append(hostIfs, "mnh"+containerNet(t, c, name).EndpointID[:12])
	}
	// A second network with non-default options: ICC off, MTU, dual stack.
	// Restore must rebuild it as it was, not with defaults.
	const icc = "mit-reboot-icc"
	v6 := freeV6Subnet(t)
	nICC := lc.net(icc, "-d", pluginName, "--ipv6", "--subnet", freeV4Subnet(t, 111).String(), "--subnet", v6.String(),
		"-o", "com.docker.network.bridge.enable_icc=false", "-o", "com.docker.network.driver.mtu=1400")
	runContainer(t, icc+"-1", "--network", icc)
	runContainer(t, icc+"-2", "--network", icc)
	brICC := mynetBridge(nICC)
	ep1 := containerNet(t, icc+"-1", icc)
	iccIP2 := containerIP(t, icc+"-2", icc)
	iccGW, iccGW6 := netip.MustParseAddr(ep1.Gateway), netip.MustParseAddr(ep1.IPv6Gateway)
	hostIfs = append(hostIfs, "mnh"+ep1.EndpointID[:12])
	checkICC := func(when string) {
		t.Helper()
		if err := ping(t, icc+"-1", iccGW); err != nil {
			t.Errorf("%s: ICC-off network, gateway: %v", when, err)
		}
		if err := ping(t, icc+"-1", iccGW6); err != nil {
			t.Errorf("%s: ICC-off network, IPv6 gateway: %v", when, err)
		}
		if err := noPing(icc+"-1", iccIP2); err != nil {
			t.Errorf("%s: ICC off: %v", when, err)
		}
		if err := noPing(icc+"-1", s.srvIP); err != nil {
			t.Errorf("%s: isolation between the two networks: %v", when, err)
		}
		if b, err := os.ReadFile("/sys/class/net/" + brICC + "/mtu"); err != nil || strings.TrimSpace(string(b)) != "1400" {
			t.Errorf("%s: bridge %s MTU %q (%v), want 1400", when, brICC, b, err)
		}
	}
	checkICC("before")

	everything := waitDockerdIdle(t, 10*time.Minute)
	if err := p.Stop(); err != nil {
		t.Fatalf("stop the plugin: %v", err)
	}
	for _, b := range []string{br, brICC} {
		mustRun(t, "ip", "link", "del", b)
	}
	if everything {
		wipeOurFirewall(t, nil)
		for _, tool := range []string{"iptables-save", "ip6tables-save"} {
			for _, l := range ruleLines(tool) {
				if strings.Contains(strings.ToLower(l), "mynet") {
					t.Fatalf("%s still has a rule of ours after the wipe: %s", tool, l)
				}
			}
		}
	} else {
		t.Logf("another mynet instance is alive: deleting only network %s's rules and chains", s.net.ID[:12])
		wipeOurFirewall(t, map[string]bool{s.net.ID[:12]: true, nICC.ID[:12]: true})
	}
	// The simulation really broke the network.
	if err := noPing(s.cli, s.srvIP); err != nil {
		t.Fatalf("after deleting bridge %s, the containers still talk: the simulation is broken: %v", br, err)
	}

	off := p.LogSize()
	if err := p.Start(); err != nil {
		t.Fatalf("start the plugin: %v", err)
	}
	// Each repair is logged (README: "Restarts").
	repaired := false
	for _, l := range strings.Split(p.LogSince(off, 200), "\n") {
		if strings.Contains(l, "repaired") && strings.Contains(l, br) {
			repaired = true
		}
	}
	if !repaired {
		t.Errorf("plugin log has no \"repaired\" line naming bridge %s:\n%s", br, p.LogSince(off, 40))
	}
	for _, b := range []string{br, brICC} {
		if !linkExists(b) {
			t.Fatalf("bridge %s not re-created", b)
		}
	}
	for i, h := range hostIfs {
		want := br
		if i == 2 {
			want = brICC
		}
		if m, _ := filepath.EvalSymlinks("/sys/class/net/" + h + "/master"); filepath.Base(m) != want {
			t.Errorf("host veth %s is on %q, want %s", h, filepath.Base(m), want)
		}
	}
	checkICC("after the reboot")
	s.afterRestart(t, name)
}

// dockerd restart without live-restore: containers with --restart always
// come back on the mynet network and reach each other, the published port
// answers, and our jumps are first again (in FORWARD: first after DOCKER-USER)
// within ~10 s. Named ZZ to run last.
func TestRestartZZDockerd(t *testing.T) {
	withPlugin(t)
	needDockerdAlone(t)
	defer ensureDockerd(t)
	lc := assertNoBridgeLeftovers(t)
	const name = "mit-dockerd"
	s := prepareRestart(t, lc, name, true)

	pid := dockerdPID(t)
	stopDockerd(t, pid)
	// Watch FORWARD while dockerd starts: Docker puts its own jumps on top;
	// the plugin must move ours back.
	watchStart := time.Now()
	stopWatch := make(chan struct{})
	watched := make(chan string, 1)
	go func() {
		var displaced, back time.Duration
		for {
			select {
			case <-stopWatch:
				if displaced == 0 {
					watched <- "no displacement of our FORWARD jump was observed"
				} else {
					watched <- fmt.Sprintf("dockerd displaced our FORWARD jump at +%.1fs; it was first again at +%.1fs", displaced.Seconds(), back.Seconds())
				}
				return
			case <-time.After(200 * time.Millisecond):
			}
			ours := strings.Contains(firstRules()["filter/FORWARD"], "MYNET-")
			switch {
			case !ours && displaced == 0:
				displaced = time.Since(watchStart)
			case ours && displaced != 0 && back == 0:
				back = time.Since(watchStart)
			}
		}
	}()
	newPid, err := startDockerd()
	if err != nil {
		close(stopWatch)
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("dockerd is back (pid %d) %.1fs after it was started", newPid, up.Sub(watchStart).Seconds())

	var first map[string]string
	if err := eventually(12*time.Second, func() error {
		first = firstRules()
		for k, l := range first {
			if !strings.Contains(l, "MYNET-") {
				return fmt.Errorf("%s first rule (after DOCKER-USER) is %q", k, l)
			}
		}
		if len(first) != 4 {
			return fmt.Errorf("rules: %v", first)
		}
		return nil
	}); err != nil {
		keys := make([]string, 0, len(first))
		for k := range first {
			keys = append(keys, k+": "+first[k])
		}
		sort.Strings(keys)
		t.Errorf("%.0fs after dockerd answered, our jumps are not first: %v\n%s", time.Since(up).Seconds(), err, strings.Join(keys, "\n"))
	} else {
		t.Logf("our jumps are first %.1fs after dockerd answered", time.Since(up).Seconds())
	}
	close(stopWatch)
	t.Log(<-watched)

	for _, c := range []string{s.srv, s.cli} {
		if err := waitRunning(c, 90*time.Second); err != nil {
			t.Fatalf("--restart always container did not come back: %v", err)
		}
	}
	s.srvIP, s.cliIP = containerIP(t, s.srv, name), containerIP(t, s.cli, name)
	if err := s.check(t, "after the dockerd restart", 20*time.Second); err != nil {
		t.Error(err)
	}
}
