package main

import (
	"strings"
	"testing"
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
