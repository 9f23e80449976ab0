package link

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSysctlsSetUnderRoot(t *testing.T) {
	root := t.TempDir()
	key := "net/ipv4/conf/br0/route_localnet"
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(key)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, key), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Sysctls{Root: root}
	prev, changed, err := s.Set(key, "1")
	if err != nil || prev != "0" || !changed {
		t.Fatalf("Set = %q, %v, %v; want \"0\", true, nil", prev, changed, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, key)); string(b) != "1" {
		t.Fatalf("file holds %q, want 1", b)
	}
	prev, changed, err = s.Set(key, "1")
	if err != nil || prev != "1" || changed {
		t.Fatalf("second Set = %q, %v, %v; want \"1\", false, nil", prev, changed, err)
	}
	if err := s.Stat(key); err != nil {
		t.Fatalf("Stat of a present key: %v", err)
	}
	if err := s.Stat("net/bridge/bridge-nf-call-iptables"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v, want not exist", err)
	}
	_, _, err = s.Set("net/ipv4/ip_forward", "1")
	if err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward") {
		t.Fatalf("Set of a missing key: %v, want an error naming net.ipv4.ip_forward", err)
	}
	if _, err := os.Stat(filepath.Join(root, "net/ipv4/ip_forward")); err == nil {
		t.Fatal("Set of a missing key created a file")
	}
}

func TestSysctlsZeroValueIsProcSys(t *testing.T) {
	if got := (Sysctls{}).path("net/ipv4/ip_forward"); got != "/proc/sys/net/ipv4/ip_forward" {
		t.Fatalf("path = %s", got)
	}
}
