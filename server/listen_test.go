package server

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/internal/testutil"
)

// staleSocket leaves a socket file that nothing listens on, as a crash does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// A path that is not a socket is never removed, whatever it is.
func TestListenNeverRemovesWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := testutil.WriteFile(t, filepath.Join(dir, "mynet.db"), "state")
	emptyDir := filepath.Join(dir, "d")
	os.Mkdir(emptyDir, 0o755)
	link := filepath.Join(dir, "link.sock")
	os.Symlink(file, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	danglingToStale := filepath.Join(dir, "to-stale.sock")
	os.Symlink(stale, danglingToStale)
	for _, p := range []string{file, emptyDir, link, fifo, danglingToStale} {
		before, _ := os.Lstat(p)
		ln, err := Listen(p)
		if err == nil {
			ln.Close()
			t.Errorf("%s: Listen replaced a %v", p, before.Mode().Type())
			continue
		}
		if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("%s: %v does not say the path is not a socket", p, err)
		}
		if !testutil.Unchanged(p, before) {
			t.Errorf("%s was removed or replaced", p)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "state" {
		t.Errorf("the file behind the symlink changed: %q", b)
	}
}

// A socket a process listens on is refused, named as in use, and left alone;
// also when that process does not accept (its backlog is full).
func TestListenRefusesASocketInUse(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	other, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	busy := filepath.Join(dir, "busy.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: busy}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the backlog: later connects fail with EAGAIN, not ECONNREFUSED.
	for i := 0; i < 4; i++ {
		if c, err := net.DialTimeout("unix", busy, 100*time.Millisecond); err == nil {
			defer c.Close()
		}
	}

	for _, p := range []string{live, busy} {
		before, _ := os.Lstat(p)
		ln, err := Listen(p)
		if err == nil {
			ln.Close()
			t.Errorf("%s: Listen took over a socket in use", p)
			continue
		}
		if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("%s: %v does not say the socket is in use", p, err)
		}
		if !testutil.Unchanged(p, before) {
			t.Errorf("%s was removed or replaced", p)
		}
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Errorf("the other process no longer answers on %s: %v", live, err)
	} else {
		c.Close()
	}
}

func TestListenReplacesAStaleSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.sock")
	staleSocket(t, p)
	ln, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(p)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket after Listen: %v %v", st, err)
	}
	ln.Close()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s: %v", p, err)
	}
}

// Several processes starting at once on one stale socket: one serves it,
// the others are told it is in use; none replaces the winner's socket.
func TestConcurrentListensOnAStaleSocketOneWins(t *testing.T) {
	for round := 0; round < 20; round++ {
		p := filepath.Join(t.TempDir(), "x.sock")
		staleSocket(t, p)
		const n = 8
		var wg sync.WaitGroup
		var start sync.WaitGroup
		start.Add(1)
		lns := make([]net.Listener, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start.Wait()
				lns[i], errs[i] = Listen(p)
			}()
		}
		start.Done()
		wg.Wait()
		var won []net.Listener
		for i := range lns {
			if errs[i] == nil {
				won = append(won, lns[i])
			} else if !strings.Contains(errs[i].Error(), "in use") {
				t.Errorf("round %d: loser's error %v does not say in use", round, errs[i])
			}
		}
		if len(won) != 1 {
			for _, ln := range won {
				ln.Close()
			}
			t.Fatalf("round %d: %d of %d concurrent Listens on one path succeeded, want 1", round, len(won), n)
		}
		// The path reaches the winner.
		go func() {
			if c, err := net.Dial("unix", p); err == nil {
				c.Close()
			}
		}()
		won[0].(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(5 * time.Second))
		c, err := won[0].Accept()
		if err != nil {
			t.Fatalf("round %d: the winner got no connection through %s: %v", round, p, err)
		}
		c.Close()
		won[0].Close()
	}
}

// Close removes the path only while it is still this listener's socket.
func TestCloseLeavesAnotherProcessSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.sock")
	ln, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p) // someone removed ours and serves their own there
	other, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before, _ := os.Lstat(p)
	ln.Close()
	if !testutil.Unchanged(p, before) {
		t.Fatal("closing our listener removed another process's socket")
	}
}
