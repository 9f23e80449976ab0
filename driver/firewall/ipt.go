package firewall

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/mynet/mynet/timing"
)

// backend runs iptables-save and iptables-restore (or the ip6tables ones) of
// the same flavour (nf_tables or legacy) as the iptables binary that
// go-iptables found. Every call execs one process on the calling OS thread,
// so a caller that locked its goroutine to a thread in another network
// namespace programs that namespace.
type backend struct {
	fam  family
	name string // "iptables" or "ip6tables"

	// How to start iptables-save / iptables-restore: path and argv[0].
	// When iptables is a link to a multi-call binary (xtables-nft-multi,
	// xtables-legacy-multi) we start that binary with argv[0] set to the
	// applet name, so save/restore always use the same backend as iptables.
	savePath, saveArg0       string
	restorePath, restoreArg0 string
	wait                     bool // restore understands --wait

	// runs counts the processes started (tests use it to prove that an
	// idempotent call changes nothing).
	runs int
	// applyHook, when set, replaces running iptables-restore (tests inject
	// failures with it).
	applyHook func(script string) error

	// nft: the nf_tables backend, whose changes bump the ruleset
	// generation (cache.go); the legacy one does not.
	nft bool
	// cached: the ruleset as of Firewall.gen (nil: read it again).
	cached *ruleset
}

func newBackend(fam family) (*backend, error) {
	proto := iptables.ProtocolIPv4
	name := "iptables"
	if fam == v6 {
		proto = iptables.ProtocolIPv6
		name = "ip6tables"
	}
	ipt, err := iptables.NewWithProtocol(proto)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b := &backend{fam: fam, name: name}
	v1, v2, v3 := ipt.GetIptablesVersion()
	b.wait = v1 > 1 || (v1 == 1 && (v2 > 6 || (v2 == 6 && v3 >= 2)))

	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	resolved, err := filepath.EvalSymlinks(path)
	b.nft = isNft(resolved)
	if err == nil && isMultiBinary(filepath.Base(resolved)) {
		b.savePath, b.saveArg0 = resolved, name+"-save"
		b.restorePath, b.restoreArg0 = resolved, name+"-restore"
		return b, nil
	}
	if b.savePath, err = exec.LookPath(name + "-save"); err != nil {
		return nil, fmt.Errorf("%s-save: %w", name, err)
	}
	if b.restorePath, err = exec.LookPath(name + "-restore"); err != nil {
		return nil, fmt.Errorf("%s-restore: %w", name, err)
	}
	b.saveArg0, b.restoreArg0 = name+"-save", name+"-restore"
	return b, nil
}

// isNft tells the nf_tables flavour of iptables from the legacy one: by the
// multi-call binary it links to, else by its version line.
func isNft(resolved string) bool {
	switch filepath.Base(resolved) {
	case "xtables-nft-multi":
		return true
	case "xtables-legacy-multi":
		return false
	}
	out, err := exec.Command(resolved, "--version").Output()
	return err == nil && strings.Contains(string(out), "nf_tables")
}

func isMultiBinary(base string) bool {
	return strings.HasPrefix(base, "xtables-") && strings.HasSuffix(base, "-multi")
}

// save returns the current ruleset (every table).
func (b *backend) save() (*ruleset, error) {
	b.runs++
	defer timing.Since(timing.Iptables, time.Now())
	var stdout, stderr bytes.Buffer
	cmd := exec.Cmd{Path: b.savePath, Args: []string{b.saveArg0}, Stdout: &stdout, Stderr: &stderr}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s-save: %w: %s", b.name, err, strings.TrimSpace(stderr.String()))
	}
	rs, err := parseSave(stdout.String())
	if err != nil {
		return nil, fmt.Errorf("%s-save: %w", b.name, err)
	}
	return rs, nil
}

var restoreLineRE = regexp.MustCompile(`line (\d+)`)

// apply feeds the script to iptables-restore --noflush. Each table of the
// script is committed atomically by iptables-restore; tables are committed one
// after the other, so a failure may leave an earlier table applied (callers
// roll back from a fresh save).
func (b *backend) apply(s *script) error {
	if s.empty() {
		return nil
	}
	text := s.String()
	if b.applyHook != nil {
		return b.applyHook(text)
	}
	b.runs++
	defer timing.Since(timing.Iptables, time.Now())
	args := []string{b.restoreArg0, "--noflush"}
	if b.wait {
		args = append(args, "--wait")
	}
	var stderr bytes.Buffer
	cmd := exec.Cmd{Path: b.restorePath, Args: args, Stdin: strings.NewReader(text), Stderr: &stderr}
	if err := cmd.Run(); err != nil {
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		if m := restoreLineRE.FindStringSubmatch(msg); m != nil {
			if n, convErr := strconv.Atoi(m[1]); convErr == nil {
				lines := strings.Split(text, "\n")
				if n >= 1 && n <= len(lines) {
					msg += fmt.Sprintf(" (rule: %s)", lines[n-1])
				}
			}
		}
		return fmt.Errorf("%s-restore: %w: %s", b.name, err, msg)
	}
	return nil
}
