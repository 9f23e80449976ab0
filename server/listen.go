package server

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Listen listens on a root-only unix socket at path, replacing a stale one
// a crash left behind but never one another process still serves. The
// daemon uses it for the plugin socket and the admin socket alike.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is served by another process: stop it, or give this one another --name or --state", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Only root (dockerd, the operator) talks to us.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
