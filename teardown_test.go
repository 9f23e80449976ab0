package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAPIAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"1.49", true}, {"1.51", true}, {"2.0", true}, {"1.100", true},
		{"1.48", false}, {"1.41", false}, {"0.99", false},
		{"", false}, {"1", false}, {"1.x", false}, {"v1.50", false}, {"1.-50", false},
	} {
		if got := apiAtLeast(tc.v, asyncTeardownAPI); got != tc.want {
			t.Errorf("apiAtLeast(%q, %s) = %v, want %v", tc.v, asyncTeardownAPI, got, tc.want)
		}
	}
}

// followEngine asks a Docker API on a unix socket (a fake one here) and
// turns async teardown on for a new engine, off for an old one, and keeps
// it off while the engine does not answer.
func TestFollowEngineTracksTheAPIVersion(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	var api atomic.Value
	api.Store("1.41")
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprintf(w, `{"Version":"x","ApiVersion":%q}`, api.Load())
	})
	var mu sync.Mutex
	var setTo []bool // what followEngine set, in order
	set := func(on bool) { mu.Lock(); setTo = append(setTo, on); mu.Unlock() }
	got := func() []bool { mu.Lock(); defer mu.Unlock(); return append([]bool{}, setTo...) }
	waitFor := func(want []bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if fmt.Sprint(got()) == fmt.Sprint(want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("set calls %v, want %v", got(), want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); followEngine(ctx, sock, set, slog.Default()) }()
	time.Sleep(100 * time.Millisecond) // Docker not up yet: nothing decided
	if len(got()) != 0 {
		t.Fatalf("decided without an engine: %v", got())
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	waitFor([]bool{false}) // 1.41: Docker 20.10
	cancel()
	<-done

	api.Store("1.51")
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	mu.Lock()
	setTo = nil
	mu.Unlock()
	go followEngine(ctx, sock, set, slog.Default())
	waitFor([]bool{true}) // 1.51: Docker 28.5
	if calls.Load() < 2 {
		t.Fatalf("the fake API was asked %d times", calls.Load())
	}
}
