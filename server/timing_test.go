package server

import (
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/timing"
)

// linesWith are the lines of a log that contain prefix.
func linesWith(l *testutil.LockedBuffer, prefix string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// The debug request line splits a lone call's time into netlink, iptables
// and bbolt; a call that overlapped other work says so instead.
func TestRequestLogSplitsTime(t *testing.T) {
	var logs testutil.LockedBuffer
	type seen struct{ call, outcome string }
	var got []seen
	h := ipamMuxWith(t, Config{
		Log:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observe: func(call, outcome string, _ timing.Result) { got = append(got, seen{call, outcome}) },
	})
	if code, out := post(h, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.73.0.0/24"}`); code != 200 {
		t.Fatalf("request pool: %d %v", code, out)
	}
	lines := linesWith(&logs, `msg=request call=IpamDriver.RequestPool`)
	lone := regexp.MustCompile(`took=\S+ netlink=\S+ iptables=0s bbolt=(\S+)$`)
	if len(lines) != 1 || !lone.MatchString(lines[0]) || lone.FindStringSubmatch(lines[0])[1] == "0s" {
		t.Fatalf("lone request (a bbolt write, no iptables) logged %q", lines)
	}

	// Background work in flight (as the firewall check or a scrape would be).
	bg := timing.Begin()
	post(h, "/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.73.0.0/24"}`)
	bg.End()
	lines = linesWith(&logs, `msg=request call=IpamDriver.RequestAddress`)
	if len(lines) != 1 || !regexp.MustCompile(`took=\S+ parts=overlapped$`).MatchString(lines[0]) || strings.Contains(lines[0], "bbolt=") {
		t.Fatalf("overlapped request logged %q", lines)
	}

	// Failures carry the same fields and reach the observer with their outcome.
	post(h, "/IpamDriver.RequestPool", `{"Pool":`)
	post(h, "/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.99.0.0/24"}`)
	if lines = linesWith(&logs, `msg="request failed" call=IpamDriver.RequestPool`); len(lines) != 1 || !strings.Contains(lines[0], " took=") {
		t.Fatalf("failed request logged %q", lines)
	}
	want := []seen{{"IpamDriver.RequestPool", OK}, {"IpamDriver.RequestAddress", OK}, {"IpamDriver.RequestPool", BadRequest}}
	if len(got) != 4 || !equalPrefix(got, want) || got[3].call != "IpamDriver.RequestAddress" || got[3].outcome == OK {
		t.Fatalf("observed %v", got)
	}
}

func equalPrefix[T comparable](got, want []T) bool {
	for i := range want {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
