package main

import (
	"strings"
	"testing"
	"time"
)

// The daemon itself is tested from the outside in blackbox/; these are the
// flag and environment rules of package main.

func TestFlagsAndEnvironment(t *testing.T) {
	t.Setenv("MYNET_NAME", "fromenv")
	t.Setenv("MYNET_LOG_LEVEL", "debug")
	c, err := parseFlags(nil)
	if err != nil || c.name != "fromenv" || c.logLevel != "debug" || c.state != "/var/lib/mynet/mynet.db" {
		t.Fatalf("env defaults: %+v %v", c, err)
	}
	c, err = parseFlags([]string{"--name", "flag"})
	if err != nil || c.name != "flag" {
		t.Fatalf("flag over env: %+v %v", c, err)
	}
	if _, err := parseFlags([]string{"--name", "a/b"}); err == nil {
		t.Fatal("name with / accepted")
	}
	if _, err := newLogger("loud", "text"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad level: %v", err)
	}
}

// A bad --metrics value stops the start with a message naming the flag.
func TestMetricsFlagRefusesBadValues(t *testing.T) {
	for _, bad := range []string{"9323", "unix:rel.sock", "example.com:80"} {
		if _, err := parseFlags([]string{"--metrics", bad}); err == nil || !strings.Contains(err.Error(), "--metrics") {
			t.Errorf("--metrics %q: %v", bad, err)
		}
	}
	t.Setenv("MYNET_METRICS", "unix:/run/mynet/metrics.sock")
	if c, err := parseFlags(nil); err != nil || c.metrics.Path != "/run/mynet/metrics.sock" {
		t.Errorf("MYNET_METRICS: %+v %v", c.metrics, err)
	}
}

// The reconcile's flags and their environment twins; bad values are
// refused naming the flag and what is valid.
func TestReconcileFlags(t *testing.T) {
	for _, k := range []string{"MYNET_RECONCILE_EVERY", "MYNET_RECONCILE_GRACE", "DOCKER_HOST"} {
		t.Setenv(k, "") // unset, for envOr
	}
	c, err := parseFlags(nil)
	if err != nil || c.reconcileEvery != 5*time.Minute || c.reconcileGrace != 2*time.Minute || c.dockerSocket != "/var/run/docker.sock" {
		t.Fatalf("defaults: every %s grace %s docker %q %v", c.reconcileEvery, c.reconcileGrace, c.dockerSocket, err)
	}
	t.Setenv("MYNET_RECONCILE_EVERY", "30s")
	t.Setenv("MYNET_RECONCILE_GRACE", "10s")
	t.Setenv("DOCKER_HOST", "unix:///run/other.sock")
	c, err = parseFlags(nil)
	if err != nil || c.reconcileEvery != 30*time.Second || c.reconcileGrace != 10*time.Second || c.dockerSocket != "/run/other.sock" {
		t.Fatalf("from the environment: every %s grace %s docker %q %v", c.reconcileEvery, c.reconcileGrace, c.dockerSocket, err)
	}
	c, err = parseFlags([]string{"--reconcile-every", "0", "--docker-host", "tcp://10.0.0.1:2375"})
	if err != nil || c.reconcileEvery != 0 {
		t.Fatalf("--reconcile-every 0 with a docker host it would not use: %+v %v", c, err)
	}
	for _, bad := range [][]string{
		{"--reconcile-every", "-1s"},
		{"--reconcile-every", "100ms"},
		{"--reconcile-every", "five"},
		{"--reconcile-every", "48h"},
		{"--reconcile-grace", "-1m"},
		{"--docker-host", "tcp://10.0.0.1:2375"},
		{"--docker-host", "unix://relative.sock"},
	} {
		_, err := parseFlags(bad)
		if err == nil || !strings.Contains(err.Error(), bad[0]) || !strings.Contains(err.Error(), "give ") {
			t.Errorf("%v: %v, want an error naming %s and what is valid", bad, err, bad[0])
		}
	}
}
