//go:build integration

package engine

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Two engines side by side: each sees only its own links under /sys and in
// netlink, runs a container, and Stop leaves no namespace, folder or process.
func TestTwoEngines(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root")
	}
	var engines []*Engine
	for _, name := range []string{"mynet-et1", "mynet-et2"} {
		// MYNET_IT_DOCKERD, else (empty) Start's default: dockerd from PATH.
		e, err := Start(Config{Name: name, Dockerd: os.Getenv("MYNET_IT_DOCKERD")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Stop() })
		engines = append(engines, e)
	}

	hostLinks, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range engines {
		// dockerd made docker0 in its own namespace: visible there through
		// both sysfs and netlink, and the host's links are not.
		out, err := e.Command("ls", "/sys/class/net").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ls /sys/class/net: %v: %s", e.Name, err, out)
		}
		if got := strings.Join(strings.Fields(string(out)), " "); got != "docker0 lo" {
			t.Errorf("%s: /sys/class/net = %q, want \"docker0 lo\" (host has %d links)", e.Name, got, len(hostLinks))
		}
		if out, err := e.Command("ip", "-o", "link", "show", "docker0").CombinedOutput(); err != nil {
			t.Errorf("%s: ip link show docker0: %v: %s", e.Name, err, out)
		}
		if _, err := os.Stat("/sys/fs/cgroup/devices"); err == nil {
			if out, err := e.Command("ls", "/sys/fs/cgroup/devices").CombinedOutput(); err != nil {
				t.Errorf("%s: cgroup mounts not visible inside: %v: %s", e.Name, err, out)
			}
		}
		// Plugin sockets are private: a file in /run/docker/plugins inside is not on the host.
		marker := "/run/docker/plugins/mynet-engine-test.sock"
		if out, err := e.Command("sh", "-c", "mkdir -p /run/docker/plugins && touch "+marker).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", e.Name, err, out)
		}
		if _, err := os.Stat(marker); err == nil {
			os.Remove(marker)
			t.Errorf("%s: %s created inside the engine shows on the host", e.Name, marker)
		}
	}

	e := engines[0]
	if err := e.ImportBusybox("mynet-engine-test:latest"); err != nil {
		t.Fatal(err)
	}
	out, err := e.Docker("run", "--rm", "mynet-engine-test:latest", "ip", "-o", "-4", "addr", "show", "eth0")
	if err != nil {
		t.Fatalf("run a container: %v\n%s", err, out)
	}
	if !strings.Contains(out, "inet 172.") {
		t.Errorf("container address: %q, want one on docker0's 172.x subnet", out)
	}
	if _, err := engines[1].Docker("image", "inspect", "mynet-engine-test:latest"); err == nil {
		t.Errorf("an image imported into %s shows in %s", e.Name, engines[1].Name)
	}

	// A dockerd restart inside the same namespaces keeps the engine's state.
	if err := e.StopDockerd(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if e.DockerdPID() != 0 {
		t.Fatalf("dockerd still running after StopDockerd")
	}
	if err := e.StartDockerd(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Docker("image", "inspect", "mynet-engine-test:latest"); err != nil {
		t.Errorf("image gone after a dockerd restart: %v", err)
	}

	for _, e := range engines {
		holder, dir, ns := e.Holder, e.Dir, e.NetNSPath
		if err := e.Stop(); err != nil {
			t.Errorf("%s: Stop: %v", e.Name, err)
		}
		if Alive(holder) {
			t.Errorf("%s: namespace holder %d still running", e.Name, holder)
		}
		for _, p := range []string{dir, ns} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s: %s left behind", e.Name, p)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil && strings.Contains(string(out), "mynet-et") {
		t.Errorf("network namespaces left: %s", out)
	}
}
