//go:build integration

// Package integration tests mynet against the real Docker engine of this machine.
//
// Run it with `make test` (which first runs integration/setup.sh to install
// Docker, start dockerd and build the busybox test image), or, once the machine
// is prepared:
//
//	go test -race -count=1 -tags integration -v ./integration/
//
// TestMain builds the binary, serves it as the legacy plugin "mynetit"
// (/run/docker/plugins/mynetit.sock) with its state in a temporary folder, runs
// the tests and removes every container and network named mit-*.
//
// Environment knobs: MYNET_IT_DOCKERD=path runs the suite against that dockerd,
// started in its own namespaces (engines_test.go; MYNET_IT_ENGINE_NAME names
// that engine, so several runs can share a machine); MYNET_IT_BIN=path tests a
// prebuilt binary instead of building one; MYNET_IT_RACE=1 builds the plugin with -race; MYNET_IT_KEEP=1
// keeps the temporary folder (state, plugin log) after the run.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pluginName is the driver and IPAM name the tests use (-d / --ipam-driver).
const pluginName = "mynetit"

// plugin is the shared plugin process, started by TestMain.
var plugin *Plugin

// repoRoot is the repository root (where go.mod is), found by TestMain.
var repoRoot string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "integration: "+format+"\n", args...)
	return 1
}

const howToPrepare = "run `make test` from the repository root (it runs integration/setup.sh, which installs Docker, starts dockerd and builds " + testImage + ")"

func runMain(m *testing.M) int {
	if code, handled := engineMode(); handled {
		return code
	}
	// Never skip: a suite that silently runs nothing is worse than a failure.
	if os.Geteuid() != 0 {
		return fail("must run as root (bridges, iptables, containers); %s", howToPrepare)
	}
	if out, err := dockerCmd("info"); err != nil {
		return fail("`%s info` failed: %v\n%s\nNo working Docker engine: %s", dockerBin, err, strings.TrimSpace(out), howToPrepare)
	}
	if out, err := dockerCmd("image", "inspect", "--format", "{{.Id}}", testImage); err != nil {
		return fail("image %s missing: %v\n%s\n%s", testImage, err, strings.TrimSpace(out), howToPrepare)
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return fail("cannot find the repository root with `go env GOMOD` (%q): %v", gomod, err)
	}
	repoRoot = filepath.Dir(gomod)

	tmp, err := os.MkdirTemp("", "mynet-it-")
	if err != nil {
		return fail("temp dir: %v", err)
	}
	keepTmp := false
	defer func() {
		if !keepTmp {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.MkdirAll(filepath.Join(tmp, "state"), 0o755); err != nil {
		return fail("state dir: %v", err)
	}

	bin := filepath.Join(tmp, "mynet")
	if prebuilt := os.Getenv("MYNET_IT_BIN"); prebuilt != "" {
		// A binary built elsewhere (e.g. with other flags): test that one instead.
		bin = prebuilt
	} else {
		buildArgs := []string{"build", "-o", bin}
		if os.Getenv("MYNET_IT_RACE") == "1" { // the plugin itself under the race detector
			buildArgs = append(buildArgs, "-race")
		}
		build := exec.Command(goBin, append(buildArgs, ".")...)
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			return fail("go build in %s failed: %v\n%s", repoRoot, err, out)
		}
	}

	plugin = &Plugin{
		Name:    pluginName,
		Bin:     bin,
		State:   filepath.Join(tmp, "state", "mynet.db"),
		LogPath: filepath.Join(tmp, "mynet.log"),
	}
	if err := plugin.Start(); err != nil {
		return fail("%v", err)
	}

	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			removePrefixed(os.Stderr)
			if err := plugin.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "integration: stop plugin: %v\n", err)
			}
			// A socket left behind without a listener stalls dockerd's plugin
			// lookups for ~15 s each; the plugin should remove it itself.
			if _, err := os.Stat(plugin.SocketPath()); err == nil {
				fmt.Fprintf(os.Stderr, "integration: WARNING: %s still exists after the plugin stopped; removing it\n", plugin.SocketPath())
				os.Remove(plugin.SocketPath())
			}
		})
	}
	defer cleanup()

	// Ctrl-C / kill: still remove what we created and stop the plugin.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "integration: got %v, cleaning up\n", s)
		cleanup()
		os.RemoveAll(tmp)
		os.Exit(1)
	}()

	// Leftovers of an earlier run that died (now served by the new plugin,
	// which must accept deletes of objects it does not know).
	removePrefixed(os.Stderr)

	start := time.Now()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "integration: FAILED after %s; plugin log tail (%s):\n%s\n",
			time.Since(start).Round(time.Second), plugin.LogPath, plugin.LogTail(60))
	}
	if os.Getenv("MYNET_IT_KEEP") == "1" {
		keepTmp = true
		fmt.Fprintf(os.Stderr, "integration: keeping %s (MYNET_IT_KEEP=1)\n", tmp)
	}
	return code
}
