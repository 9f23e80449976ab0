package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badFlags are values that must stop the start; each error names the flag
// and what would be valid. DIR stands for a fresh temporary directory.
var badFlags = []struct {
	args []string
	want []string // every one must be in the message
}{
	{[]string{"--firewall-check", "0"}, []string{"--firewall-check", "from 1s to 24h,"}},
	{[]string{"--firewall-check", "-5s"}, []string{"--firewall-check", "from 1s to 24h,"}},
	{[]string{"--firewall-check", "1ms"}, []string{"--firewall-check", "from 1s to 24h,"}},
	{[]string{"--firewall-check", "1000h"}, []string{"--firewall-check", "from 1s to 24h,"}},
	{[]string{"--firewall-check", "soon"}, []string{"--firewall-check", "from 1s to 24h,"}},
	{[]string{"--name", ""}, []string{"--name", "plain name"}},
	{[]string{"--name", "a/b"}, []string{"--name", "plain name"}},
	{[]string{"--name", ".."}, []string{"--name", "plain name"}},
	{[]string{"--name", "a\nb"}, []string{"--name", "plain name"}},
	{[]string{"--name", strings.Repeat("n", 120)}, []string{"--name", "at most 107 bytes"}},
	{[]string{"--socket-dir", ""}, []string{"--socket-dir", "directory"}},
	{[]string{"--state", ""}, []string{"--state", "file"}},
	{[]string{"--state", "/var/lib/mynet/"}, []string{"--state", "file"}},
	{[]string{"--state", "/" + strings.Repeat("s", 110)}, []string{"--state", "at most 107 bytes"}},
	{[]string{"--log-level", "loud"}, []string{"--log-level", "debug, info, warn or error"}},
	{[]string{"--log-format", "xml"}, []string{"--log-format", "text or json"}},
	{[]string{"--default-pools", "10.0.0.0/8:33"}, []string{"--default-pools", "from 8 to 32"}},
	{[]string{"--default-pools", ""}, []string{"--default-pools", "BASE/LEN:SIZE"}},
	{[]string{"--sysctl-root", "proc/sys"}, []string{"--sysctl-root", "absolute path of a directory"}},
	{[]string{"--sysctl-root", "/nonexistent/sys"}, []string{"--sysctl-root", "absolute path of a directory"}},
	{[]string{"--metrics", "9323"}, []string{"--metrics", "host:port"}},
	{[]string{"--metrics", "127.0.0.1:0"}, []string{"--metrics", "host:port"}},
	{[]string{"--state", "DIR/x.db", "--metrics", "unix:DIR/x.db"}, []string{"--metrics", "the state file"}},
	{[]string{"--state", "DIR/x.db", "--metrics", "unix:DIR/x.db.sock"}, []string{"--metrics", "admin socket"}},
	{[]string{"--socket-dir", "DIR/p", "--metrics", "unix:DIR/p/mynet.sock"}, []string{"--metrics", "plugin socket"}},
	{[]string{"--advertise", "10.0.0.11"}, []string{"--advertise", "given without --cluster"}},
	{[]string{"--cluster-ca", "ca.pem"}, []string{"--cluster-ca", "given without --cluster"}},
	{[]string{"--cluster", "10.0.0.5:2379"}, []string{"--cluster", "start the list with etcd://"}},
	{[]string{"--cluster", "etcd://10.0.0.5"}, []string{"--cluster", "HOST:PORT"}},
	{[]string{"--cluster", "etcd://10.0.0.5:2379", "--advertise", "127.0.0.1"}, []string{"--advertise", "unicast address"}},
	{[]string{"--cluster", "etcd://10.0.0.5:2379", "--advertise", "host"}, []string{"--advertise", "unicast address"}},
	{[]string{"--vxlan-port", "0"}, []string{"--vxlan-port", "from 1 to 65535"}},
	{[]string{"--cluster-sync", "0"}, []string{"--cluster-sync", "from 1s to 24h"}},
}

func TestEveryFlagIsValidated(t *testing.T) {
	for _, tc := range badFlags {
		_, err := parseFlags(inDir(tc.args, t.TempDir()))
		if err == nil {
			t.Errorf("%q accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: %q does not say %q", tc.args, err, w)
			}
		}
	}
	if _, err := parseFlags([]string{"--firewall-check", "1h", "--sysctl-root", "/proc/sys", "--metrics", "127.0.0.1:9323"}); err != nil {
		t.Errorf("good flags refused: %v", err)
	}
}

// --cluster and --advertise come from the environment too (the managed plugin's way).
func TestClusterFlagsFromEnvironment(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil || c.cluster.Endpoints != nil || c.cluster.VXLANPort != 4789 {
		t.Fatalf("no --cluster: %+v %v", c.cluster, err)
	}
	t.Setenv("MYNET_CLUSTER", "etcd://10.0.0.5:2379,10.0.0.6:2379")
	t.Setenv("MYNET_ADVERTISE", "10.0.0.11")
	c, err = parseFlags(nil)
	if err != nil || len(c.cluster.Endpoints) != 2 || c.cluster.Endpoints[1] != "http://10.0.0.6:2379" || c.cluster.Advertise.String() != "10.0.0.11" {
		t.Fatalf("cluster from env: %+v %v", c.cluster, err)
	}
	t.Setenv("MYNET_ADVERTISE", "127.0.0.1")
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "MYNET_ADVERTISE") {
		t.Fatalf("bad MYNET_ADVERTISE: %v", err)
	}
}

// A bad value that comes from the environment names its variable too.
func TestBadEnvironmentValueNamesTheVariable(t *testing.T) {
	t.Setenv("MYNET_LOG_LEVEL", "loud")
	_, err := parseFlags(nil)
	if err == nil || !strings.Contains(err.Error(), "--log-level") || !strings.Contains(err.Error(), "MYNET_LOG_LEVEL") {
		t.Fatalf("bad MYNET_LOG_LEVEL: %v", err)
	}
	if _, err := parseFlags([]string{"--log-level", "warn"}); err != nil {
		t.Fatalf("flag over a bad env value: %v", err)
	}
}

// The whole program, not only parseFlags: a bad flag exits 2 with one line
// naming it, before it opens the state file or a socket. The child is this
// test binary re-entering main in a fresh network namespace, so a value that
// slips through cannot touch the host.
func TestBadFlagStopsTheStartWithExitCode2(t *testing.T) {
	if os.Getenv("MYNET_FLAGS_CHILD") == "1" {
		var args []string
		if err := json.Unmarshal([]byte(os.Getenv("MYNET_FLAGS_ARGS")), &args); err != nil {
			t.Fatal(err)
		}
		os.Args = append([]string{"mynet"}, args...)
		main()
		return
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed to run the daemon in its own network namespace")
	}
	for _, tc := range badFlags {
		dir := t.TempDir()
		args := append([]string{"--socket-dir", filepath.Join(dir, "sock"), "--state", filepath.Join(dir, "state.db")}, inDir(tc.args, dir)...)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, "unshare", "-n", os.Args[0], "-test.run=^TestBadFlagStopsTheStartWithExitCode2$")
		encoded, _ := json.Marshal(args)
		cmd.Env = append(os.Environ(), "MYNET_FLAGS_CHILD=1", "MYNET_FLAGS_ARGS="+string(encoded))
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%q: exit %v, want 2\n%s", tc.args, err, out)
			continue
		}
		if strings.Contains(string(out), "panic") || !strings.HasPrefix(string(out), "mynet: "+tc.want[0]) {
			t.Errorf("%q: output does not start by naming %s:\n%s", tc.args, tc.want[0], out)
		}
		if _, err := os.Stat(filepath.Join(dir, "state.db")); !os.IsNotExist(err) && !strings.Contains(strings.Join(tc.args, " "), "--state") {
			t.Errorf("%q: a state file was created before the flags were checked", tc.args)
		}
	}
}

func inDir(args []string, dir string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "DIR", dir)
	}
	return out
}
