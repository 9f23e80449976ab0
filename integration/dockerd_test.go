//go:build integration

package integration

// Stopping and starting dockerd the way integration/setup.sh does, for the
// tests that restart the engine (restart, soak, managed plugin), and waiting
// until nobody else uses it.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/integration/engine"
)

// dockerdLog is where the engine's output goes: integration/setup.sh's log,
// or the log of the engine the suite runs inside.
var dockerdLog = "/var/log/mynet-dockerd.log"

const dockerdPidFile = "/run/mynet-dockerd.pid" // as integration/setup.sh

func isDockerd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	arg0 := strings.SplitN(string(b), "\x00", 2)[0]
	return filepath.Base(arg0) == "dockerd"
}

// dockerdPID finds the running dockerd: setup.sh's pid file, else pidof
// (used only to find the pid; the signal goes to that pid).
func dockerdPID(t *testing.T) int {
	t.Helper()
	if inEngine != nil {
		pid := inEngine.DockerdPID()
		if pid == 0 {
			t.Fatalf("engine %s: no dockerd running (pid file %s)", inEngine.Name, inEngine.PidFile)
		}
		return pid
	}
	if b, err := os.ReadFile(dockerdPidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isDockerd(pid) {
			return pid
		}
	}
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		t.Fatalf("pidof dockerd: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 1 {
		t.Fatalf("pidof dockerd: %q, want exactly one dockerd", out)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || !isDockerd(pid) {
		t.Fatalf("pidof dockerd: %q is not a dockerd", out)
	}
	return pid
}

// closeInheritedFDs marks every descriptor above stderr close-on-exec. Go
// opens its own files that way, but not the ones this process inherited:
// under `flock /tmp/mynet-it.lock go test ...` the lock is one of them, and a
// dockerd started from here would hold it for as long as it runs, locking
// every later run out.
func closeInheritedFDs() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// startDockerd starts dockerd in the background as integration/setup.sh
// does (own session, log appended, pid file) and waits for `docker info`.
func startDockerd() (int, error) {
	if inEngine != nil {
		err := inEngine.StartDockerd()
		return inEngine.DockerdPID(), err
	}
	logf, err := os.OpenFile(dockerdLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n===== mynet integration test: starting dockerd at %s =====\n", time.Now().Format(time.RFC3339))
	cmd := exec.Command("dockerd")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	closeInheritedFDs()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start dockerd: %w", err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it if it ever exits while we run
	_ = os.WriteFile(dockerdPidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := dockerCmd("info"); err == nil {
			return pid, nil
		}
		if !engine.Alive(pid) {
			return pid, fmt.Errorf("dockerd (pid %d) exited; see %s", pid, dockerdLog)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return pid, fmt.Errorf("dockerd (pid %d) did not answer `docker info` within 60s; see %s", pid, dockerdLog)
}

// stopDockerd stops dockerd pid with SIGTERM and waits until it is gone.
func stopDockerd(t *testing.T, pid int) {
	t.Helper()
	t.Logf("stopping dockerd (pid %d) with SIGTERM", pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM dockerd %d: %v", pid, err)
	}
	if err := eventually(90*time.Second, func() error {
		if engine.Alive(pid) {
			return fmt.Errorf("dockerd %d still running", pid)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// ensureDockerd leaves a running engine behind, whatever happened.
func ensureDockerd(t *testing.T) {
	if _, err := dockerCmd("info"); err == nil {
		return
	}
	if inEngine != nil {
		if inEngine.DockerdPID() == 0 {
			if err := inEngine.StartDockerd(); err != nil {
				t.Errorf("could not restore dockerd: %v", err)
			}
		}
		return
	}
	// One may be starting still.
	if pid, err := exec.Command("pidof", "dockerd").Output(); err == nil && len(strings.Fields(string(pid))) > 0 {
		if eventually(60*time.Second, func() error { _, err := dockerCmd("info"); return err }) == nil {
			return
		}
		t.Errorf("dockerd %s runs but does not answer", strings.TrimSpace(string(pid)))
		return
	}
	t.Logf("no dockerd after the test: starting one")
	if _, err := startDockerd(); err != nil {
		t.Errorf("could not restore dockerd: %v", err)
	}
}

// dockerdUsers lists who else uses dockerd: `go test -tags integration`
// runs other than this one, benchmark scripts and containers (mbench-*),
// and networks of mynet instances other than the shared plugin and the
// drivers in ours.
func dockerdUsers(ours ...string) []string {
	var busy []string
	mine := ancestors()
	ents, _ := os.ReadDir("/proc")
	if inEngine != nil {
		ents = nil // an engine of our own: no other test run can use it
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || mine[pid] {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		cmd := strings.Join(argv, " ")
		base := filepath.Base(argv[0])
		goTest := base == "go" && len(argv) > 1 && argv[1] == "test" && reTagsIntegration.MatchString(cmd)
		if (goTest || base == "integration.test") && inPrivateEngine(pid) {
			continue
		}
		if goTest || base == "integration.test" || strings.Contains(cmd, "bench.sh") {
			busy = append(busy, fmt.Sprintf("pid %d: %s", pid, cmd))
		}
	}
	out, _ := dockerCmd("ps", "-a", "--filter", "name=mbench-", "--format", "{{.Names}}")
	busy = append(busy, strings.Fields(out)...)
	out, _ = dockerCmd("network", "ls", "--format", "{{.Name}}|{{.Driver}}")
	for _, l := range strings.Fields(out) {
		n, drv, _ := strings.Cut(l, "|")
		if strings.HasPrefix(drv, "mynet") && drv != pluginName && !slices.Contains(ours, drv) {
			busy = append(busy, "network "+n+" ("+drv+")")
		}
	}
	return busy
}

// inPrivateEngine says whether pid is a run of the suite against an engine
// of its own (MYNET_IT_DOCKERD outside it, MYNET_IT_ENGINE_DIR inside): it
// never touches the host's dockerd.
func inPrivateEngine(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if strings.HasPrefix(kv, "MYNET_IT_DOCKERD=") && kv != "MYNET_IT_DOCKERD=" || strings.HasPrefix(kv, engineDirEnv+"=") {
			return true
		}
	}
	return false
}

var reTagsIntegration = regexp.MustCompile(`(^|\s)-tags[= ]\S*integration`)

// ancestors is the set of this process and its ancestors.
func ancestors() map[int]bool {
	m := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !m[pid]; {
		m[pid] = true
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			break
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			break
		}
		pid, _ = strconv.Atoi(f[1])
	}
	return m
}

// waitDockerdIdle waits up to d until nobody else uses dockerd
// (dockerdUsers) and says whether that came: the callers restart dockerd or
// delete mynet's shared chains, which would break the others.
func waitDockerdIdle(t *testing.T, d time.Duration, ours ...string) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	logged := false
	for {
		busy := dockerdUsers(ours...)
		if len(busy) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("still used by others after %s: %v", d, busy)
			return false
		}
		if !logged {
			t.Logf("waiting for other users of dockerd to finish: %v", busy)
			logged = true
		}
		time.Sleep(5 * time.Second)
	}
}

// needDockerdAlone fails the test unless nobody else uses dockerd within
// 15 minutes.
func needDockerdAlone(t *testing.T, ours ...string) {
	t.Helper()
	if !waitDockerdIdle(t, 15*time.Minute, ours...) {
		t.Fatalf("a benchmark, another integration run or another mynet instance still uses dockerd after 15 minutes; not restarting dockerd under it")
	}
}
