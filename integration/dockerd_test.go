//go:build integration

package integration

// Stopping and starting dockerd the way integration/setup.sh does, for the
// tests that restart the engine (restart_test.go, plugin_test.go).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// A zombie (state Z) has exited; its parent has not reaped it yet.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
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
		if procGone(pid) {
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
	if err := e2eEventually(90*time.Second, func() error {
		if !procGone(pid) {
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
		if e2eEventually(60*time.Second, func() error { _, err := dockerCmd("info"); return err }) == nil {
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
