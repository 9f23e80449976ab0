package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mynet/mynet/internal/proctest"
)

// badFlags are values that must stop the start: for each flag, given after
// the flags in with, every value in bad is refused with an error that names
// the flag and says what would be valid. DIR stands for a fresh temporary
// directory.
var badFlags = []struct {
	flag string
	bad  []string
	says string
	with []string
}{
	{flag: "--firewall-check", bad: []string{"0", "-5s", "1ms", "1000h", "soon"}, says: "from 1s to 24h,"},
	{flag: "--name", bad: []string{"", "a/b", "..", "a\nb"}, says: "plain name"},
	{flag: "--name", bad: []string{strings.Repeat("n", 120)}, says: "at most 107 bytes"},
	{flag: "--socket-dir", bad: []string{""}, says: "directory"},
	{flag: "--state", bad: []string{"", "/var/lib/mynet/"}, says: "file"},
	{flag: "--state", bad: []string{"/" + strings.Repeat("s", 110)}, says: "at most 107 bytes"},
	{flag: "--log-level", bad: []string{"loud"}, says: "debug, info, warn or error"},
	{flag: "--log-format", bad: []string{"xml"}, says: "text or json"},
	{flag: "--default-pools", bad: []string{"10.0.0.0/8:33"}, says: "from 8 to 32"},
	{flag: "--default-pools", bad: []string{""}, says: "BASE/LEN:SIZE"},
	{flag: "--sysctl-root", bad: []string{"proc/sys", "/nonexistent/sys"}, says: "absolute path of a directory"},
	{flag: "--metrics", bad: []string{"9323", "127.0.0.1:0"}, says: "host:port"},
	{flag: "--metrics", bad: []string{"unix:DIR/x.db"}, says: "the state file", with: []string{"--state", "DIR/x.db"}},
	{flag: "--metrics", bad: []string{"unix:DIR/x.db.sock"}, says: "admin socket", with: []string{"--state", "DIR/x.db"}},
	{flag: "--metrics", bad: []string{"unix:DIR/p/mynet.sock"}, says: "plugin socket", with: []string{"--socket-dir", "DIR/p"}},
	{flag: "--advertise", bad: []string{"10.0.0.11"}, says: "given without --cluster"},
	{flag: "--cluster-ca", bad: []string{"ca.pem"}, says: "given without --cluster"},
	{flag: "--cluster", bad: []string{"10.0.0.5:2379"}, says: "start the list with etcd://"},
	{flag: "--cluster", bad: []string{"etcd://10.0.0.5"}, says: "HOST:PORT"},
	{flag: "--advertise", bad: []string{"127.0.0.1", "host"}, says: "unicast address", with: []string{"--cluster", "etcd://10.0.0.5:2379"}},
	{flag: "--vxlan-port", bad: []string{"0"}, says: "from 1 to 65535"},
	{flag: "--cluster-sync", bad: []string{"0"}, says: "from 1s to 24h"},
	{flag: "--async-teardown", bad: []string{"", "yes", "ON"}, says: "give auto, on or off"},
}

// badFlagCase is one refused command line: args, and the flag and words its
// error must hold.
type badFlagCase struct {
	args       []string
	flag, says string
}

// badFlagCases spells badFlags out, one command line per bad value.
func badFlagCases() []badFlagCase {
	var out []badFlagCase
	for _, f := range badFlags {
		for _, v := range f.bad {
			args := append(append([]string{}, f.with...), f.flag, v)
			out = append(out, badFlagCase{args, f.flag, f.says})
		}
	}
	return out
}

func TestEveryFlagIsValidated(t *testing.T) {
	for _, tc := range badFlagCases() {
		_, err := parseFlags(inDir(tc.args, t.TempDir()))
		if err == nil {
			t.Errorf("%q accepted", tc.args)
			continue
		}
		for _, w := range []string{tc.flag, tc.says} {
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
	for _, tc := range badFlagCases() {
		dir := t.TempDir()
		args := append([]string{"--socket-dir", filepath.Join(dir, "sock"), "--state", filepath.Join(dir, "state.db")}, inDir(tc.args, dir)...)
		encoded, _ := json.Marshal(args)
		out, code := proctest.RunIsolated(t, 20*time.Second, []string{"MYNET_FLAGS_CHILD=1", "MYNET_FLAGS_ARGS=" + string(encoded)},
			os.Args[0], "-test.run=^TestBadFlagStopsTheStartWithExitCode2$")
		if code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", tc.args, code, out)
			continue
		}
		if strings.Contains(out, "panic") || !strings.HasPrefix(out, "mynet: "+tc.flag) {
			t.Errorf("%q: output does not start by naming %s:\n%s", tc.args, tc.flag, out)
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
