package link

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mynet/mynet/timing"
)

// Sysctls reads and writes kernel settings below Root; the zero value uses
// /proc/sys. A managed plugin, whose /proc/sys is read-only, gives the place
// where the host's /proc/sys/net is bound read-write. The driver and the
// firewall share one, so every sysctl mynet writes goes below the same root.
type Sysctls struct {
	Root string
}

func (s Sysctls) path(key string) string {
	root := s.Root
	if root == "" {
		root = "/proc/sys"
	}
	return filepath.Join(root, key)
}

// Get reads the value of key (like "net/ipv4/ip_forward").
func (s Sysctls) Get(key string) (string, error) {
	cur, err := os.ReadFile(s.path(key))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	return strings.TrimSpace(string(cur)), nil
}

// Set writes value to key (like "net/ipv4/ip_forward") unless it already
// holds that value. It returns the previous value and whether it wrote, so
// a caller that rolls back can put the previous value back.
func (s Sysctls) Set(key, value string) (prev string, changed bool, err error) {
	defer timing.Since(timing.Netlink, time.Now())
	name := strings.ReplaceAll(key, "/", ".")
	prev, err = s.Get(key)
	if err != nil {
		return "", false, err
	}
	if prev == value {
		return prev, false, nil
	}
	if err := os.WriteFile(s.path(key), []byte(value), 0o644); err != nil {
		return prev, false, fmt.Errorf("set %s=%s: %w (set it on the host if mynet runs without write access to /proc/sys)", name, value, err)
	}
	return prev, true, nil
}

// Stat reports whether the kernel has key (a module's settings appear once
// it is loaded): nil, or the error of looking for its file.
func (s Sysctls) Stat(key string) error {
	_, err := os.Stat(s.path(key))
	return err
}
