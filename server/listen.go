package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Listen listens on a root-only unix socket at path: the plugin socket, the
// admin socket and a --metrics unix: socket alike. It replaces only a socket
// that nothing answers on (a crash left it behind); it refuses a socket
// another process listens on, busy or not, and anything at path that is not
// a socket, and never removes either. Closing the listener removes path
// while it is still this listener's socket.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Two daemons starting at once must not both find the socket stale and
	// each replace the other's: check, remove and bind under one lock.
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Close below removes path only if it is still ours
	// Only root (dockerd, the operator) talks to us.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, err
	}
	st, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &socket{UnixListener: ln, path: path, st: st}, nil
}

// removeStale clears path for a new socket: nothing there, or a socket that
// refuses connections (no process listens on it).
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s): mynet replaces only a socket nothing answers on; move it away or choose another path", path, kind(st.Mode()))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("socket %s is in use: another process answers on it; stop that process or choose another path", path)
	case errors.Is(err, syscall.EAGAIN):
		return fmt.Errorf("socket %s is in use: another process listens on it but does not accept now (its backlog is full); stop that process or choose another path", path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("socket %s may be in use: connecting to it: %v; mynet replaces only a socket that refuses connections", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "a device"
	}
	return m.Type().String()
}

// lockDir takes an exclusive flock on dir until the returned func runs.
// Every mynet takes it around its check-remove-bind of a socket in dir.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing the descriptor drops the lock
}

// socket is a unix listener that removes its path on Close only while the
// path is still this socket: never one another process made there since.
type socket struct {
	*net.UnixListener
	path string
	st   os.FileInfo
}

func (s *socket) Close() error {
	err := s.UnixListener.Close()
	unlock, lerr := lockDir(filepath.Dir(s.path))
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	defer unlock()
	if now, serr := os.Lstat(s.path); serr == nil && os.SameFile(s.st, now) {
		os.Remove(s.path)
	}
	return err
}
