//go:build integration

package multihost

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// A host's mynet is SIGKILLed: traffic across hosts goes on (the kernel
// keeps its state). Its links are then deleted as a reboot would; when mynet
// comes back it rebuilds from its state file and etcd before serving, and
// knows the endpoints that appeared meanwhile.
func TestPluginKilledAndRestarted(t *testing.T) {
	h1, h2, h3 := L.hosts[0], L.hosts[1], L.hosts[2]
	vxlanNet(t, "kill", "10.212.0.0/24", L.hosts)
	c1 := h1.container(t, "mit-kill1", "mit-kill")
	c2 := h2.container(t, "mit-kill2", "mit-kill")
	eventually(t, L.syncWait(), "h1 -> h2", func() error { return h1.ping(t, "mit-kill1", c2, 56) })

	h2.stopMynet(syscall.SIGKILL)
	t.Cleanup(func() {
		if !h2.running() {
			if err := h2.startMynet(L); err != nil {
				t.Error(err)
			}
		}
	})
	h1.expectPing(t, "with h2's mynet dead, h1 -> h2", "mit-kill1", c2)
	h2.expectPing(t, "with h2's mynet dead, h2 -> h1", "mit-kill2", c1)
	// Then the host's network state goes as in a reboot: mynet's bridge and
	// VXLAN device with every entry on them (the container keeps its end).
	id := h2.mustDocker(t, "network", "inspect", "-f", "{{.Id}}", "mit-kill")
	for _, l := range []string{"mnv" + id[:12], "mn-" + id[:12]} {
		if out, err := h2.run("ip", "link", "del", l); err != nil {
			t.Fatalf("delete %s: %v: %s", l, err, out)
		}
	}
	c3 := h3.container(t, "mit-kill3", "mit-kill") // while h2's mynet is down
	if err := h2.startMynet(L); err != nil {
		t.Fatal(err)
	}
	// Rebuilt from the state file and etcd before serving: no wait needed.
	h2.expectPing(t, "h2 -> the container h3 started meanwhile, right after the restart", "mit-kill2", c3)
	h1.expectPing(t, "h1 -> h2 right after the restart", "mit-kill1", c2)
	c2b := h2.container(t, "mit-kill2b", "mit-kill")
	eventually(t, L.syncWait(), "h1 -> a new container on h2", func() error { return h1.ping(t, "mit-kill1", c2b, 56) })
}

// etcd stops: running containers keep talking; a docker run that needs an
// address fails within seconds naming etcd; when etcd is back, new
// containers start and every host learns them.
func TestEtcdStoppedAndResumed(t *testing.T) {
	h1, h2 := L.hosts[0], L.hosts[1]
	vxlanNet(t, "etcd", "10.213.0.0/24", []*host{h1, h2})
	h1.container(t, "mit-etcd1", "mit-etcd")
	c2 := h2.container(t, "mit-etcd2", "mit-etcd")
	eventually(t, L.syncWait(), "h1 -> h2", func() error { return h1.ping(t, "mit-etcd1", c2, 56) })

	L.etcd.Stop()
	t.Cleanup(func() {
		if L.etcd.Pid() == 0 {
			if err := L.etcd.Start(); err != nil {
				t.Error(err)
			}
		}
	})
	h1.expectPing(t, "etcd stopped: h1 -> h2", "mit-etcd1", c2)
	t.Cleanup(func() { h1.removeContainers(t, "mit-etcd-x") })
	start := time.Now()
	out, err := h1.docker(t, "run", "-d", "--name", "mit-etcd-x", "--network", "mit-etcd", image, "sleep", "3600")
	took := time.Since(start)
	if err == nil {
		t.Fatal("docker run with etcd stopped succeeded")
	}
	if !strings.Contains(out, "etcd at "+L.etcd.Endpoint()) {
		t.Errorf("docker run with etcd stopped: %s\nwant the error to name etcd at %s", out, L.etcd.Endpoint())
	}
	t.Logf("docker run failed after %s: %s", took.Round(time.Millisecond), out)
	if took > 30*time.Second {
		t.Errorf("docker run took %s to fail", took)
	}
	h1.removeContainers(t, "mit-etcd-x")

	if err := L.etcd.Start(); err != nil {
		t.Fatal(err)
	}
	var c3 string
	eventually(t, 60*time.Second, "docker run once etcd is back", func() error {
		h1.removeContainers(t, "mit-etcd3")
		_, err := h1.docker(t, "run", "-d", "--name", "mit-etcd3", "--network", "mit-etcd", image, "sleep", "3600")
		return err
	})
	t.Cleanup(func() { h1.removeContainers(t, "mit-etcd3") })
	c3 = h1.addr(t, "mit-etcd3", "mit-etcd")
	eventually(t, 30*time.Second, "h2 -> the container started after etcd came back", func() error { return h2.ping(t, "mit-etcd2", c3, 56) })
}
