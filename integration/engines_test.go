//go:build integration

package integration

// The suite against another Docker engine. With MYNET_IT_DOCKERD=<dockerd>,
// TestMain starts that dockerd in its own network and mount namespaces
// (integration/engine) and runs this same test binary inside them, where the
// docker client, the plugin, links, sysfs and iptables all belong to that
// engine; the host's engine is not touched. MYNET_IT_DOCKER=<client> picks
// the docker client used against it (default: the host's).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mynet/mynet/integration/engine"
)

const (
	// engineDirEnv tells the test binary it runs inside an engine, and where
	// that engine's folder is.
	engineDirEnv = "MYNET_IT_ENGINE_DIR"
	// defaultEngineName names the engine's network namespace and folder;
	// MYNET_IT_ENGINE_NAME picks another, so that several runs of the suite
	// (each in an engine of its own) can share a machine.
	defaultEngineName = "mynet-it"
	// engineUplink is a veth pair inside the engine's namespace; the first
	// end carries the "host address" that port tests publish on.
	engineUplink, engineUplinkPeer = "uplink0", "uplink1"
	engineUplinkAddr               = "198.18.254.1/30"
	// pluginBaseImage is integration/plugin/build.sh's base image.
	pluginBaseImage = "mynet-plugin-base:bookworm"
)

// inEngine is the engine this test binary runs inside, or nil when it talks
// to the host's dockerd.
var inEngine *engine.Engine

// engineMode handles MYNET_IT_DOCKERD. Inside an engine it records that engine
// and lets the suite run (handled=false). Outside, with MYNET_IT_DOCKERD set,
// it runs the suite inside a fresh engine and returns its exit code.
func engineMode() (code int, handled bool) {
	if dir := os.Getenv(engineDirEnv); dir != "" {
		e, err := engine.Attach(dir)
		if err != nil {
			return fail("%s=%s: %v", engineDirEnv, dir, err), true
		}
		inEngine = e
		dockerdLog = e.LogPath
		if cli := os.Getenv("MYNET_IT_DOCKER"); cli != "" {
			dockerBin = cli
		}
		return 0, false
	}
	dockerd := os.Getenv("MYNET_IT_DOCKERD")
	if dockerd == "" {
		return 0, false
	}
	return runInEngine(dockerd), true
}

func runInEngine(dockerd string) int {
	if os.Geteuid() != 0 {
		return fail("must run as root (engine in its own namespaces); %s", howToPrepare)
	}
	start := time.Now()
	e, err := engine.Start(engine.Config{
		Name:    engineName(),
		Dockerd: dockerd,
		Keep:    os.Getenv("MYNET_IT_KEEP") == "1",
		// Debug: the plugin tests read a managed plugin's debug lines from
		// dockerd's log.
		Daemon: map[string]any{"debug": true},
	})
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: stop engine: %v\n", err)
		}
	}()
	for _, args := range [][]string{
		{"ip", "link", "add", engineUplink, "type", "veth", "peer", "name", engineUplinkPeer},
		{"ip", "addr", "add", engineUplinkAddr, "dev", engineUplink},
		{"ip", "link", "set", engineUplink, "up"},
		{"ip", "link", "set", engineUplinkPeer, "up"},
	} {
		if out, err := e.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fail("engine uplink: %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := e.ImportBusybox(testImage); err != nil {
		return fail("%v", err)
	}
	// The managed plugin's base image is made with debootstrap, which needs
	// a Debian mirror the engine's namespace cannot reach: make it in the
	// host's engine (once; build.sh keeps it there) and copy it in.
	if _, err := dockerCmd("image", "inspect", pluginBaseImage); err != nil {
		build := exec.Command("bash", "plugin/build.sh", "--base-only", "--base", pluginBaseImage)
		if out, err := build.CombinedOutput(); err != nil {
			return fail("plugin base image on the host engine: %v\n%s", err, out)
		}
	}
	if err := e.CopyImage("", pluginBaseImage); err != nil {
		return fail("%v", err)
	}
	// The registry the plugin tests push to is built from the Go module
	// proxy, which the engine's namespace cannot reach either.
	if _, err := registryBin(func(f string, a ...any) { fmt.Fprintf(os.Stderr, "integration: "+f+"\n", a...) }); err != nil {
		return fail("%v", err)
	}
	version, _ := e.Docker("version", "--format", "{{.Server.Version}}")
	fmt.Fprintf(os.Stderr, "integration: dockerd %s in namespaces %s (folder %s) ready after %s\n",
		strings.TrimSpace(version), e.NetNSPath, e.Dir, time.Since(start).Round(100*time.Millisecond))

	self, err := os.Executable()
	if err != nil {
		return fail("test binary: %v", err)
	}
	cmd := e.Command(self, os.Args[1:]...)
	cmd.Env = append(cmd.Env, engineDirEnv+"="+e.Dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fail("run the tests inside the engine: %v", err)
	}
	// Ctrl-C / kill reach the inner binary, which cleans up; then the engine stops.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		fmt.Fprintf(os.Stderr, "integration: tests inside the engine failed (%v); dockerd log %s:\n%s\n",
			err, e.LogPath, engine.Tail(e.LogPath, 40))
		return exit.ExitCode()
	default:
		return fail("tests inside the engine: %v", err)
	}
}

// engineName is MYNET_IT_ENGINE_NAME, or defaultEngineName.
func engineName() string {
	if n := os.Getenv("MYNET_IT_ENGINE_NAME"); n != "" {
		return n
	}
	return defaultEngineName
}
