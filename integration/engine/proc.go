package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ping asks dockerd's API socket for /_ping.
func ping(socket string) error {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}},
	}
	resp, err := client.Get("http://engine/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/_ping: %s", resp.Status)
	}
	return nil
}

func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// isOurDockerd: pid is a dockerd whose data root lies in dir (pid files
// outlive their process, and pids are reused).
func isOurDockerd(pid int, dir string) bool {
	return pid > 0 && strings.Contains(cmdline(pid), "--data-root "+dir+"/data")
}

// isHolder: pid is the namespace holder of the engine in dir.
func isHolder(pid int, dir string) bool {
	return pid > 0 && strings.Contains(cmdline(pid), "mynet-engine-holder "+dir)
}

// Alive reports whether pid runs (a zombie has exited).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for Alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// killNamespace kills every process, other than the caller, that lives in
// the mount namespace of pid: all of them descend from the engine (containers
// and shims left by a dockerd that was killed).
func killNamespace(pid int) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return
	}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var victims []int
	for _, ent := range ents {
		p, err := strconv.Atoi(ent.Name())
		if err != nil || p == self || p == pid {
			continue
		}
		if other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", p)); err == nil && other == ns {
			victims = append(victims, p)
		}
	}
	for _, p := range victims {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	for _, p := range victims {
		waitGone(p, 5*time.Second)
	}
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Tail returns the last n lines of a file (a log, for an error message);
// nothing if it cannot be read.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// closeInheritedFDs marks every descriptor above stderr close-on-exec. Go
// opens its own files that way, but not the ones this process inherited:
// under `flock LOCK go test ...` the lock is one of them, and a dockerd
// started from here would hold the lock for as long as it runs.
func closeInheritedFDs() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
