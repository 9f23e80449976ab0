// Package testutil holds the harness pieces that the tests of several
// packages share: a fresh network namespace, a real IPAM on a temporary
// bbolt file, a log buffer safe for concurrent writers. Only tests import it.
package testutil

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/state"
)

// InNetns runs fn on a thread moved into a new network namespace with its
// loopback up, so kernel tests never touch the host's links. Everything that
// touches the kernel must run inside fn.
func InNetns(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if _, err := netns.New(); err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
		fn()
	}()
	<-done
}

// Store opens a bbolt store in the test's temporary directory, closed when
// the test ends.
func Store(t testing.TB) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), "m.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// IPAM is a real IPAM driver with the default ranges on a temporary store;
// the host has no routes, so no range is skipped.
func IPAM(t testing.TB) *ipam.Driver {
	t.Helper()
	rs, _ := ipam.ParseRanges(ipam.DefaultRanges)
	d, err := ipam.New(ipam.Config{Store: Store(t), Ranges: rs, Host: func() ([]netip.Prefix, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// LockedBuffer is a bytes.Buffer that a logger on other goroutines may
// write to while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// WriteFile writes data to path, making its directory, and returns path.
func WriteFile(t testing.TB, path, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Unchanged says whether path is still the file before describes, neither
// removed nor replaced. Not the inode alone: tmpfs may give a new file the
// number of one just removed.
func Unchanged(path string, before os.FileInfo) bool {
	now, err := os.Lstat(path)
	return err == nil && os.SameFile(before, now) && before.Mode() == now.Mode() && before.ModTime().Equal(now.ModTime())
}

// Receive returns the next value from ch, or fails the test saying what did
// not happen if none comes within d.
func Receive[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatal(what)
	}
	var zero T
	return zero
}
