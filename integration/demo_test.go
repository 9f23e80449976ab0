//go:build integration

package integration

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What `make demo` runs and leaves behind (integration/demo.sh).
const (
	demoSock    = "/run/docker/plugins/mynet.sock"
	demoPidFile = "/run/mynet.pid"
)

// TestMakeDemoAsANewcomer runs the README's first command the way a newcomer
// does on a fresh machine: `make demo` as root in a fresh copy of the
// repository (no bin/), with a login PATH that has no Go on it, and with
// Debian's docker client not yet at /usr/bin/docker when the demo starts (on
// a fresh machine setup.sh installs it; here a private mount namespace hides
// it and the same client is elsewhere on PATH). Then the stop command the
// demo prints, after which nothing of the demo may be left running for the
// tests that follow.
func TestMakeDemoAsANewcomer(t *testing.T) {
	if c, err := net.DialTimeout("unix", demoSock, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s is already served (a demo left running?): stop it with `make demo-stop` first", demoSock)
	}
	if _, err := os.Stat("/usr/bin/docker"); err != nil {
		t.Fatalf("Debian's docker client: %v (integration/setup.sh installs it)", err)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "mynet")
	copyRepo(t, repo, fresh)

	tmp := t.TempDir()
	for _, f := range []string{"absent", "bin/docker"} {
		os.MkdirAll(filepath.Join(tmp, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(tmp, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := newcomerEnv(filepath.Join(tmp, "bin"))
	t.Cleanup(func() { stopDemoLeftovers(t, fresh) })

	// Inside the namespace: the client moves to $T/bin/docker, and
	// /usr/bin/docker becomes a file that is not executable.
	script := `set -e
mount --bind /usr/bin/docker "$T/bin/docker"
mount --bind "$T/absent" /usr/bin/docker
[ ! -x /usr/bin/docker ]
exec make demo`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Dir = fresh
	cmd.Env = append(env, "T="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("done: mynet keeps running")) {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("2 packets received")) {
		t.Errorf("make demo showed no ping between its containers:\n%s", out)
	}
	pid := demoPid(fresh)
	if pid == 0 {
		t.Fatalf("after make demo no mynet of this copy runs (pid file %s)\n%s", demoPidFile, out)
	}
	if !bytes.Contains(out, []byte("make demo-stop")) {
		t.Errorf("make demo does not say how to stop mynet:\n%s", out)
	}

	stop := exec.Command("make", "demo-stop")
	stop.Dir, stop.Env = fresh, env
	if out, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("make demo-stop: %v\n%s", err, out)
	}
	if runsMynetOf(pid, fresh) {
		t.Errorf("mynet pid %d still runs after make demo-stop", pid)
	}
	for _, p := range []string{demoSock, demoPidFile} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after make demo-stop: %v", p, err)
		}
	}
	for _, list := range [][]string{
		{"ps", "-a", "--filter", "name=mynet-demo", "--format", "{{.Names}}"},
		{"network", "ls", "--filter", "name=mynet-demo", "--format", "{{.Name}}"},
	} {
		if left, err := dockerCmd(list...); err != nil || strings.TrimSpace(left) != "" {
			t.Errorf("docker %s: the demo left %q (%v)", list[0], left, err)
		}
	}
}

// copyRepo copies what git tracks or would track (working-tree changes
// included, nothing ignored such as bin/): what a fresh clone holds.
func copyRepo(t *testing.T, from, to string) {
	t.Helper()
	files, err := exec.Command("git", "-C", from, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files in %s: %v", from, err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	tar := exec.Command("bash", "-c", `tar -C "$1" --null --ignore-failed-read -T - -cf - | tar -C "$2" -xf -`, "tar", from, to)
	tar.Stdin = bytes.NewReader(files)
	if out, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("copy %s to %s: %v\n%s", from, to, err, out)
	}
}

// newcomerEnv is root's login environment on Debian (no Go on PATH), with
// first a folder of our own, and Go's caches kept so the build is not
// downloaded again.
func newcomerEnv(firstOnPath string) []string {
	env := []string{"PATH=" + firstOnPath + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// DOCKER_HOST: under MYNET_IT_DOCKERD the engine is not at the default
		// socket, and a user whose engine is elsewhere sets it too.
		if k == "HOME" || k == "LANG" || k == "TERM" || k == "DOCKER_HOST" || strings.HasPrefix(k, "GO") {
			env = append(env, kv)
		}
	}
	return env
}

// demoPid is the pid in the demo's pid file when that process is this copy's mynet.
func demoPid(repo string) int {
	b, err := os.ReadFile(demoPidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !runsMynetOf(pid, repo) {
		return 0
	}
	return pid
}

// runsMynetOf reports whether pid is a live process of repo's bin/mynet (an
// exited one that nobody reaped yet has an empty command line).
func runsMynetOf(pid int, repo string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && string(bytes.SplitN(cmdline, []byte{0}, 2)[0]) == filepath.Join(repo, "bin", "mynet")
}

// stopDemoLeftovers removes what a failed demo run of this test left: its
// containers and networks, and the mynet it started (only that one).
func stopDemoLeftovers(t *testing.T, repo string) {
	dockerCmd("rm", "-f", "mynet-demo-a", "mynet-demo-b", "mynet-demo-ipam")
	dockerCmd("network", "rm", "mynet-demo", "mynet-demo-ipam")
	pid := demoPid(repo)
	if pid == 0 {
		return
	}
	t.Logf("stopping mynet pid %d that the demo started", pid)
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100 && runsMynetOf(pid, repo); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if runsMynetOf(pid, repo) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	os.Remove(demoPidFile)
}
