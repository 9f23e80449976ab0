// Package engine runs Docker engines (dockerd) in their own network and
// mount namespaces, so that several engines of any version run side by side
// with the host's own, each with its own iptables, links, plugin sockets
// and containerd. Other processes (mynet, a test binary, a shell) run inside
// an engine's namespaces with Command.
//
// Each engine gets:
//   - a network namespace: /run/netns/<Name>, created by Start, or an
//     existing one (Config.NetNS) the caller prepared with links of its own;
//   - a private mount namespace, kept alive by a small holder process, with
//     tmpfs on /run/docker, /run/containerd, /run/netns and /etc/docker
//     (plugin sockets and specs, containerd's socket and namespace files are
//     found by those fixed paths, so they must not be shared) and a sysfs of
//     its own network namespace on /sys, the host's cgroup and other /sys
//     mounts put back under it (dockerd needs the cgroup hierarchy);
//   - its own folder (Config.Dir) with daemon.json, API socket, data root,
//     exec root, pid file and log.
//
// The namespaces are entered with nsenter, never `ip netns exec`: that
// remounts /sys and hides the cgroup mounts, and dockerd then fails with
// "Devices cgroup isn't mounted".
package engine

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Config describes one engine.
type Config struct {
	// Name identifies the engine: its network namespace (unless NetNS is
	// set), its default folder and its containers' cgroup parent.
	Name string
	// Dockerd is the dockerd binary; default "dockerd" from PATH. A
	// docker-proxy next to it is used as its userland proxy.
	Dockerd string
	// Dir holds everything of the engine; default /tmp/mynet-engine-<Name>.
	// Start empties it; Stop removes it unless Keep is set.
	Dir string
	// NetNS is the path of an existing network namespace to run in. Empty:
	// Start creates /run/netns/<Name> and Stop deletes it.
	NetNS string
	// Daemon is written to the engine's daemon.json (--config-file).
	Daemon map[string]any
	// Args are extra dockerd flags.
	Args []string
	// StartTimeout bounds the wait for dockerd's API; default 60s.
	StartTimeout time.Duration
	// Keep leaves Dir in place after Stop (logs, state).
	Keep bool
}

// Engine is a running engine. Its fields describe where things are; they are
// also saved to <Dir>/engine.json so that another process can Attach.
type Engine struct {
	Name      string
	Dir       string
	NetNSPath string   // the network namespace it runs in
	OwnNetNS  bool     // created by Start, deleted by Stop
	Holder    int      // pid of the process holding the mount namespace
	Argv      []string // dockerd's command line (without nsenter)
	Socket    string   // dockerd's API socket
	PidFile   string   // dockerd's pid file
	LogPath   string   // dockerd's output, appended across restarts
	Timeout   time.Duration
	Keep      bool
}

const stateFile = "engine.json"

// Start prepares the namespaces and starts dockerd, returning once its API
// answers. Leftovers of an earlier engine with the same folder (processes,
// a namespace it created) are removed first. On failure nothing is left behind.
func Start(cfg Config) (_ *Engine, retErr error) {
	if cfg.Name == "" {
		return nil, errors.New("engine: Config.Name is empty")
	}
	if cfg.Dockerd == "" {
		cfg.Dockerd = "dockerd"
	}
	dockerd, err := exec.LookPath(cfg.Dockerd)
	if err != nil {
		return nil, fmt.Errorf("engine %s: dockerd binary: %w", cfg.Name, err)
	}
	if cfg.Dir == "" {
		cfg.Dir = "/tmp/mynet-engine-" + cfg.Name
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if old, err := Attach(dir); err == nil {
		_ = old.Stop() // a previous run that did not stop its engine
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("engine %s: clear %s: %w", cfg.Name, dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}

	e := &Engine{
		Name:    cfg.Name,
		Dir:     dir,
		Socket:  filepath.Join(dir, "docker.sock"),
		PidFile: filepath.Join(dir, "docker.pid"),
		LogPath: filepath.Join(dir, "dockerd.log"),
		Timeout: cfg.StartTimeout,
		Keep:    cfg.Keep,
	}
	defer func() {
		if retErr != nil {
			e.Keep = true // keep the log to read the failure
			_ = e.Stop()
		}
	}()

	e.NetNSPath = cfg.NetNS
	if e.NetNSPath == "" {
		e.NetNSPath = "/run/netns/" + cfg.Name
		if _, err := os.Stat(e.NetNSPath); err == nil {
			return nil, fmt.Errorf("engine %s: network namespace %s already exists; remove it or pass it as Config.NetNS", cfg.Name, e.NetNSPath)
		}
		if out, err := exec.Command("ip", "netns", "add", cfg.Name).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("engine %s: ip netns add: %v: %s", cfg.Name, err, strings.TrimSpace(string(out)))
		}
		e.OwnNetNS = true
	}
	if err := e.startHolder(); err != nil {
		return nil, err
	}

	daemonJSON := filepath.Join(dir, "daemon.json")
	conf := cfg.Daemon
	if conf == nil {
		conf = map[string]any{}
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("engine %s: daemon config: %w", cfg.Name, err)
	}
	if err := os.WriteFile(daemonJSON, b, 0o644); err != nil {
		return nil, err
	}
	e.Argv = []string{dockerd,
		"--config-file", daemonJSON,
		"--host", "unix://" + e.Socket,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", e.PidFile,
		"--cgroup-parent", "/mynet-engine-" + cfg.Name,
	}
	if proxy := filepath.Join(filepath.Dir(dockerd), "docker-proxy"); isExecutable(proxy) {
		e.Argv = append(e.Argv, "--userland-proxy-path", proxy)
	}
	e.Argv = append(e.Argv, cfg.Args...)
	if err := e.save(); err != nil {
		return nil, err
	}
	if err := e.StartDockerd(); err != nil {
		return nil, err
	}
	return e, nil
}

// Attach returns the engine whose folder is dir, as saved by Start: from a
// test binary running inside the engine, to restart its dockerd, or to clean
// up after a process that died.
func Attach(dir string) (*Engine, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var e Engine
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("engine state %s: %w", dir, err)
	}
	return &e, nil
}

func (e *Engine) save() error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.Dir, stateFile), b, 0o644)
}

// Host is the engine's address for DOCKER_HOST and docker -H.
func (e *Engine) Host() string { return "unix://" + e.Socket }

// Command returns a command that runs inside the engine's network and mount
// namespaces, in the caller's working directory, with DOCKER_HOST set to the
// engine. Inherited descriptors other than stdin/out/err are not passed on.
func (e *Engine) Command(name string, args ...string) *exec.Cmd {
	wd, err := os.Getwd()
	if err != nil {
		wd = "/"
	}
	argv := append([]string{"--target", fmt.Sprint(e.Holder), "--mount", "--net", "--wd=" + wd, "--", name}, args...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.Host())
	closeInheritedFDs()
	return cmd
}

// Docker runs the docker client against this engine, inside its namespaces,
// and returns its combined output.
func (e *Engine) Docker(args ...string) (string, error) {
	out, err := e.Command("docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// startHolder creates the mount namespace inside the network namespace and
// keeps it alive with a process that only sleeps.
func (e *Engine) startHolder() error {
	cmd := exec.Command("nsenter", "--net="+e.NetNSPath, "--",
		"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", holderScript, "mynet-engine-holder", e.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	closeInheritedFDs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("engine %s: start namespace holder: %w", e.Name, err)
	}
	e.Holder = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		err := <-exited
		e.Holder = 0
		return fmt.Errorf("engine %s: preparing namespaces failed (%v): %s", e.Name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// holderScript runs in the fresh mount namespace ($1 = engine folder).
const holderScript = `set -eu
dir=$1
for d in /run/docker /run/containerd /run/netns /etc/docker; do
	mkdir -p "$d"
	mount -t tmpfs -o mode=0755 mynet-engine "$d"
done
# A sysfs of this network namespace (/sys/class/net shows its links), with
# the host's mounts below /sys (cgroups above all) moved back under it.
old="$dir/host-sys"
mkdir -p "$old"
mount --rbind /sys "$old"
mount -t sysfs mynet-engine /sys
id=$(awk -v p="$old" '$5 == p { print $1 }' /proc/self/mountinfo | tail -n 1)
for m in $(awk -v id="$id" '$2 == id { print $5 }' /proc/self/mountinfo); do
	mount --rbind "$m" "/sys${m#"$old"}"
done
umount -l "$old"
rmdir "$old"
ip link set lo up
echo ready
# Not exec: the shell's command line names the folder, which identifies it.
sleep infinity &
wait
`

// StartDockerd starts dockerd in the engine's namespaces (again, after
// StopDockerd) and waits until its API answers.
func (e *Engine) StartDockerd() error {
	logf, err := os.OpenFile(e.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n===== engine %s: starting dockerd at %s =====\n", e.Name, time.Now().Format(time.RFC3339Nano))
	cmd := e.Command(e.Argv[0], e.Argv[1:]...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a Ctrl-C on the caller does not stop the engine
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("engine %s: start dockerd: %w", e.Name, err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap it whenever it exits
	deadline := time.Now().Add(e.Timeout)
	for time.Now().Before(deadline) {
		if err := ping(e.Socket); err == nil {
			return nil
		}
		if !Alive(pid) {
			return fmt.Errorf("engine %s: dockerd (pid %d) exited; log %s:\n%s", e.Name, pid, e.LogPath, Tail(e.LogPath, 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("engine %s: dockerd (pid %d) did not answer within %s; log %s:\n%s", e.Name, pid, e.Timeout, e.LogPath, Tail(e.LogPath, 20))
}

// DockerdPID is the pid of the running dockerd (from its pid file), or 0.
func (e *Engine) DockerdPID() int {
	b, err := os.ReadFile(e.PidFile)
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || !isOurDockerd(pid, e.Dir) {
		return 0
	}
	return pid
}

// StopDockerd stops dockerd with SIGTERM (SIGKILL after timeout) and waits
// until it is gone. The namespaces stay; StartDockerd starts it again.
func (e *Engine) StopDockerd(timeout time.Duration) error {
	pid := e.DockerdPID()
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("engine %s: SIGTERM dockerd %d: %w", e.Name, pid, err)
	}
	if waitGone(pid, timeout) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 10*time.Second) {
		return fmt.Errorf("engine %s: dockerd %d survives SIGKILL", e.Name, pid)
	}
	return fmt.Errorf("engine %s: dockerd %d did not stop within %s; killed", e.Name, pid, timeout)
}

// Stop stops dockerd (which stops its containers and containerd), ends the
// namespace holder, deletes the network namespace if Start created it and
// removes the folder unless Keep. Stopping a stopped engine does nothing.
func (e *Engine) Stop() error {
	var errs []error
	if err := e.StopDockerd(60 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if e.Holder != 0 && isHolder(e.Holder, e.Dir) {
		killNamespace(e.Holder) // what a killed dockerd left running
		_ = syscall.Kill(e.Holder, syscall.SIGKILL)
		waitGone(e.Holder, 10*time.Second)
	}
	e.Holder = 0
	if e.OwnNetNS {
		if _, err := os.Stat(e.NetNSPath); err == nil {
			if out, err := exec.Command("ip", "netns", "del", filepath.Base(e.NetNSPath)).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("engine %s: ip netns del: %v: %s", e.Name, err, strings.TrimSpace(string(out))))
			}
		}
		e.OwnNetNS = false
	}
	if e.Keep {
		_ = e.save()
	} else if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
