//go:build integration

package integration

// mynet doctor against drift made the way it happens in life: a container
// removed while the plugin was down (Docker forgets the endpoint and the
// address it could not release), an IPAM answer lost in a crash (an address
// allocated that Docker never got), a bridge deleted by hand.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/state"
)

// runDoctor runs `mynet doctor --json ARGS` and returns its drifts and exit code.
func runDoctor(t *testing.T, args ...string) ([]drift.Drift, int) {
	t.Helper()
	cmd := exec.Command(plugin.Bin, append([]string{"doctor", "--json", "--state", plugin.State}, args...)...)
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Errorf("mynet doctor: %v", err)
		return nil, -1
	}
	var drifts []drift.Drift
	if jerr := json.Unmarshal(out, &drifts); jerr != nil {
		t.Errorf("mynet doctor %v: exit %d, output not JSON (%v): %s %s", args, code, jerr, out, ee)
		return nil, -1
	}
	return drifts, code
}

// hasDrifts tells whether ds holds, of each kind in want, exactly that many
// drifts.
func hasDrifts(ds []drift.Drift, want map[string]int) bool {
	for kind, n := range want {
		got := 0
		for _, d := range ds {
			if d.Kind == kind {
				got++
			}
		}
		if got != n {
			return false
		}
	}
	return true
}

// removeWhilePluginDown kills the plugin and removes ctr behind its back:
// Docker cannot tell the plugin, and forgets the endpoint and the address.
// It returns ctr's endpoint on netName as it was; the plugin stays down.
func removeWhilePluginDown(t *testing.T, p *Plugin, ctr, netName string) EndpointInfo {
	t.Helper()
	ep := containerNet(t, ctr, netName)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if out, err := dockerCmd("rm", "-f", ctr); err != nil {
		t.Fatalf("docker rm -f while the plugin is down: %v\n%s", err, out)
	}
	return ep
}

// putLostAddress writes, into the stopped plugin's store, the n-th address
// of subnet as allocated age ago and never handed to Docker (an IPAM answer
// lost in a crash), and returns it.
func putLostAddress(t *testing.T, subnet netip.Prefix, n uint64, age time.Duration) netip.Addr {
	t.Helper()
	lost := nthAddr(subnet, n)
	st, err := state.Open(plugin.State, state.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(func(tx *state.Tx) error {
		pools, err := tx.Pools()
		if err != nil {
			return err
		}
		for _, pl := range pools {
			if pl.Pool == subnet {
				return tx.PutAddress(pl.ID, lost, state.Address{Kind: state.KindEndpoint, Created: time.Now().Add(-age)})
			}
		}
		return fmt.Errorf("no pool %s in the store", subnet)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	return lost
}

func TestDoctorFindsAndRepairsDrift(t *testing.T) {
	p := withPlugin(t)
	defer ensurePlugin(t)
	lc := assertNoBridgeLeftovers(t)
	const name = "mit-doc"
	subnet := freeV4Subnet(t, 130)
	n := lc.net(name, "-d", pluginName, "--ipam-driver", pluginName, "--subnet", subnet.String())
	for _, c := range []string{"mit-doc-1", "mit-doc-2", "mit-doc-3"} {
		runContainer(t, c, "--network", name)
	}
	if ds, code := runDoctor(t, "--grace", "0s"); code != 0 || len(ds) != 0 {
		t.Fatalf("before any drift: exit %d, drifts %+v", code, ds)
	}

	// 1. The plugin dies; a container is removed meanwhile: Docker cannot
	// tell us, and forgets the endpoint and the address.
	gone := removeWhilePluginDown(t, p, "mit-doc-2", name)
	// 2. An address whose RequestAddress answer never reached Docker.
	lost := putLostAddress(t, subnet, 200, 2*time.Hour)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// 3. The bridge deleted by hand (the periodic check re-adds rules, not links).
	br := mynetBridge(n)
	mustRun(t, "ip", "link", "del", br)

	// Records younger than the grace are left alone (Docker may be about to
	// use them): with an hour, the endpoint and address of minutes ago are
	// not judged, the two-hour-old lost address is.
	ds, code := runDoctor(t, "--grace", "1h")
	if code != 4 || !hasDrifts(ds, map[string]int{drift.LinksMissing: 1, drift.EndpointUnknownToDocker: 0, drift.AddressUnused: 1}) {
		t.Errorf("--grace 1h: exit %d, want 4 with the missing bridge and the old lost address %s only; drifts %+v", code, lost, ds)
	}
	ds, code = runDoctor(t, "--grace", "0s")
	if code != 4 || !hasDrifts(ds, map[string]int{drift.EndpointUnknownToDocker: 1, drift.AddressUnused: 2, drift.LinksMissing: 1}) {
		t.Fatalf("drift: exit %d, want 4 with one forgotten endpoint, two unused addresses (%s, %s), one missing bridge; got %+v", code, gone.IPAddress, lost, ds)
	}
	for _, d := range ds {
		if d.Fixed {
			t.Errorf("fixed without --fix: %+v", d)
		}
	}
	// The table form a user sees.
	out, _ := exec.Command(plugin.Bin, "doctor", "--state", plugin.State, "--grace", "0s").CombinedOutput()
	t.Logf("mynet doctor:\n%s", out)
	for _, want := range []string{drift.EndpointUnknownToDocker, drift.AddressUnused, drift.LinksMissing, "run with --fix"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table output lacks %q:\n%s", want, out)
		}
	}

	ds, code = runDoctor(t, "--fix", "--grace", "0s")
	if code != 0 {
		t.Errorf("--fix: exit %d, drifts %+v", code, ds)
	}
	for _, d := range ds {
		if !d.Fixed {
			t.Errorf("--fix left %+v", d)
		}
	}
	if ds, code := runDoctor(t, "--grace", "0s"); code != 0 || len(ds) != 0 {
		t.Errorf("after --fix: exit %d, drifts %+v", code, ds)
	}
	// Repaired for real: the bridge is back with the survivors on it, the
	// forgotten endpoint's veth is gone, both addresses can be had again.
	if !linkExists(br) {
		t.Errorf("bridge %s not re-created", br)
	}
	if linkExists("mnh" + gone.EndpointID[:12]) {
		t.Errorf("veth of the forgotten endpoint is still there")
	}
	expectPing(t, "after the repair", "mit-doc-1", containerIP(t, "mit-doc-3", name))
	for i, ip := range []string{gone.IPAddress, lost.String()} {
		runContainer(t, fmt.Sprintf("mit-doc-again%d", i), "--network", name, "--ip", ip)
	}
}

// Safe at any time: doctor --fix while containers start in parallel repairs
// nothing they use.
func TestDoctorDuringLoad(t *testing.T) {
	lc := bridgeTest(t)
	const name = "mit-docload"
	lc.net(name, "-d", pluginName, "--ipam-driver", pluginName, "--subnet", freeV4Subnet(t, 131).String())
	var wg sync.WaitGroup
	done := make(chan struct{})
	var fixed []drift.Drift
	go func() {
		defer close(done)
		for i := 0; i < 5; i++ {
			ds, _ := runDoctor(t, "--fix")
			for _, d := range ds {
				if d.Fixed {
					fixed = append(fixed, d)
				}
			}
		}
	}()
	var ctrs []string
	for i := 0; i < 10; i++ {
		c := fmt.Sprintf("mit-docload-%d", i)
		ctrs = append(ctrs, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := tryRunContainer(t, c, "--network", name); err != nil {
				t.Errorf("docker run %s: %v\n%s", c, err, out)
			}
		}()
	}
	wg.Wait()
	<-done
	if len(fixed) > 0 {
		t.Errorf("doctor --fix repaired things during normal load: %+v", fixed)
	}
	seen := map[netip.Addr]string{}
	for i, c := range ctrs {
		ip := containerIP(t, c, name)
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s share %s", c, other, ip)
		}
		seen[ip] = c
		expectPing(t, "", ctrs[(i+1)%len(ctrs)], ip)
	}
}
