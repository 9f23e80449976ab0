// Package etcdtest starts a real etcd server for tests: Debian's etcd-server
// binary (installed by integration/setup.sh), one member, its data in a
// temporary folder, listening only on the address the test names (loopback
// by default). It can be stopped, paused and started again on the same
// ports and data, so tests can take etcd away and bring it back.
package etcdtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mynet/mynet/internal/proctest"
)

// Binary is the etcd server used, overridable with MYNET_ETCD.
func Binary() string {
	if p := os.Getenv("MYNET_ETCD"); p != "" {
		return p
	}
	return "/usr/bin/etcd"
}

// Options tune Start.
type Options struct {
	// Addr is where etcd listens (client and peer port); 127.0.0.1 if zero.
	// Use an address on a test link of your own, never a host interface.
	Addr netip.Addr
	// Dir holds the data and the log; Start uses a t.TempDir() if empty.
	Dir string
	// TLS serves clients over TLS with client certificates required
	// (--client-cert-auth); Server.TLS names the files to connect with.
	TLS bool
}

// Server is one running (or stopped) etcd member.
type Server struct {
	addr       netip.Addr
	clientPort int
	peerPort   int
	dir        string
	tls        *TLSFiles // nil: plain http

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives the process's exit once
	log    *os.File
}

// Start runs etcd for one test and stops it when the test ends. The test
// fails (never skips) when the binary is missing: run integration/setup.sh.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// New runs etcd and waits until it answers; the caller stops it. For a
// TestMain that shares one server between tests (each on its own key prefix).
func New(opts Options) (*Server, error) {
	if _, err := os.Stat(Binary()); err != nil {
		return nil, fmt.Errorf("etcd server %s: %v: run integration/setup.sh (installs Debian's etcd-server) or set MYNET_ETCD", Binary(), err)
	}
	s := &Server{addr: opts.Addr, dir: opts.Dir}
	if !s.addr.IsValid() {
		s.addr = netip.MustParseAddr("127.0.0.1")
	}
	if s.dir == "" {
		return nil, fmt.Errorf("etcdtest.New: Options.Dir is required")
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	if opts.TLS {
		f, err := writeTLS(filepath.Join(s.dir, "tls"), s.addr)
		if err != nil {
			return nil, fmt.Errorf("etcdtest: certificates: %w", err)
		}
		s.tls = &f
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.clientPort, s.peerPort, err = freePorts(s.addr); err != nil {
			return nil, err
		}
		if err = s.Start(); err == nil {
			return s, nil
		}
		os.RemoveAll(filepath.Join(s.dir, "data")) // a port taken meanwhile: try other ports
	}
	return nil, err
}

// freePorts picks two ports free on addr right now (etcd binds them a moment
// later; Start retries if another process took one meanwhile).
func freePorts(addr netip.Addr) (int, int, error) {
	var ports [2]int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			return 0, 0, fmt.Errorf("find a free port on %s: %w", addr, err)
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:40123 (https with TLS).
func (s *Server) Endpoint() string {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(s.addr.String(), strconv.Itoa(s.clientPort))
}

// HostPort is the client address without a scheme, e.g. 127.0.0.1:40123.
func (s *Server) HostPort() string {
	return net.JoinHostPort(s.addr.String(), strconv.Itoa(s.clientPort))
}

// TLS is the certificate files of a server started with Options.TLS; the
// zero value otherwise.
func (s *Server) TLS() TLSFiles {
	if s.tls == nil {
		return TLSFiles{}
	}
	return *s.tls
}

// Endpoints is Endpoint as the list the client wants.
func (s *Server) Endpoints() []string { return []string{s.Endpoint()} }

// LogPath is etcd's log file.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "etcd.log") }

// Pid is the running server's process id, 0 when stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Start starts a stopped server again on the same ports and data.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	peer := "http://" + net.JoinHostPort(s.addr.String(), strconv.Itoa(s.peerPort))
	log, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"--name", "t",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", s.Endpoint(),
		"--advertise-client-urls", s.Endpoint(),
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "t=" + peer,
		"--initial-cluster-state", "new",
		"--log-level", "warn", "--logger", "zap",
	}
	if s.tls != nil {
		args = append(args, "--cert-file", s.tls.ServerCert, "--key-file", s.tls.ServerKey,
			"--trusted-ca-file", s.tls.CA, "--client-cert-auth")
	}
	cmd := exec.Command(Binary(), args...)
	cmd.Stdout, cmd.Stderr = log, log
	for _, kv := range os.Environ() { // nothing from the caller's ETCD_* settings leaks in
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Its own process group: a Ctrl-C meant for the test does not reach etcd
	// before the test's cleanup stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", Binary(), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	probe, err := s.probe()
	if err != nil {
		log.Close()
		return err
	}
	for !healthy(probe, s.Endpoint()) {
		select {
		case err := <-exited:
			log.Close()
			return fmt.Errorf("etcd exited before it answered (%v); log %s:\n%s", err, s.LogPath(), tail(s.LogPath()))
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			log.Close()
			return fmt.Errorf("etcd did not answer on %s within 30s; log %s:\n%s", s.Endpoint(), s.LogPath(), tail(s.LogPath()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.cmd, s.exited, s.log = cmd, exited, log
	return nil
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and keeps its data.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	proctest.Stop(s.cmd.Process, s.exited, 10*time.Second)
	s.log.Close()
	s.cmd, s.exited, s.log = nil, nil, nil
}

// Pause freezes the server (SIGSTOP): connections stay open and nothing is
// answered, as when etcd's host hangs or the network drops packets. It
// returns once every thread is stopped: the signal takes effect on each
// thread only when it is next scheduled, and a thread still running on a
// busy machine would answer a request sent right after.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !allStopped(s.cmd.Process.Pid); {
		time.Sleep(5 * time.Millisecond)
	}
}

// allStopped says whether every thread of pid is in the stopped state.
func allStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Resume undoes Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// probe is the HTTP client that asks a starting server whether it is ready.
func (s *Server) probe() (*http.Client, error) {
	c := &http.Client{Timeout: time.Second}
	if s.tls != nil {
		cfg, err := s.tls.clientTLS()
		if err != nil {
			return nil, err
		}
		c.Transport = &http.Transport{TLSClientConfig: cfg}
	}
	return c, nil
}

// healthy asks etcd's /health endpoint.
func healthy(c *http.Client, endpoint string) bool {
	resp, err := c.Get(endpoint + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
