package reconcile

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/docker/go-plugins-helpers/network"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/state"
)

// These tests drive real drivers on a real bbolt file and the real kernel,
// each in a fresh network namespace. Only Docker's API is a fake: a unix
// socket server the test controls (what Docker says, whether it answers).

type env struct {
	t     testing.TB
	store *state.Store
	fw    *firewall.Firewall
	net   *driver.Driver
	ipam  *ipam.Driver
	rep   *Repairer
	log   *testutil.LockedBuffer

	mu      sync.Mutex
	repairs map[string]int // what OnRepair heard, by kind
	viewAt  time.Time      // when the loop's views say they were read; zero: now
}

// inNetns runs fn on a thread in a new network namespace.
func inNetns(t testing.TB, fn func(e *env)) {
	t.Helper()
	testutil.InNetns(t, func() {
		e := &env{t: t, log: &testutil.LockedBuffer{}, repairs: map[string]int{}}
		s, err := state.Open(filepath.Join(t.TempDir(), "mynet.db"), state.Options{})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		log := slog.New(slog.NewTextHandler(e.log, nil))
		onRepair := func(kind string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.repairs[kind]++
		}
		if e.fw, err = firewall.New(nil); err != nil {
			t.Error(err)
			return
		}
		if e.net, err = driver.New(driver.Config{Store: s, Firewall: e.fw, Log: log, OnRepair: onRepair}); err != nil {
			t.Error(err)
			return
		}
		rs, _ := ipam.ParseRanges(ipam.DefaultRanges)
		if e.ipam, err = ipam.New(ipam.Config{Store: s, Ranges: rs, Log: log, OnRepair: onRepair,
			Host: func() ([]netip.Prefix, error) { return nil, nil }}); err != nil {
			t.Error(err)
			return
		}
		e.store, e.rep = s, NewRepairer(e.net, e.ipam, log)
		fn(e)
	})
}

func (e *env) repaired() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := map[string]int{}
	for k, v := range e.repairs {
		m[k] = v
	}
	return m
}

// loop is the background loop as main wires it, against socket, except
// that its views are stamped with the test's clock (later).
func (e *env) loop(socket string, every time.Duration) *Loop {
	return &Loop{Repairer: e.rep, Every: every, Log: slog.New(slog.NewTextHandler(e.log, nil)),
		View: func(ctx context.Context) (drift.View, error) {
			v, err := drift.Fetch(ctx, socket, time.Second)
			e.mu.Lock()
			defer e.mu.Unlock()
			if !e.viewAt.IsZero() {
				v.FetchedAt = e.viewAt
			}
			return v, err
		}}
}

// later moves the loop's clock d ahead of now (or of where it was moved), so
// a test steps through intervals without sleeping through them.
func (e *env) later(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.viewAt.IsZero() {
		e.viewAt = time.Now()
	}
	e.viewAt = e.viewAt.Add(d)
}

func (e *env) pool(subnet string) string {
	e.t.Helper()
	r, err := e.ipam.RequestPool(ipam.PoolRequest{AddressSpace: ipam.LocalSpace, Pool: subnet})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.PoolID
}

func (e *env) addr(pool, want string) string {
	e.t.Helper()
	r, err := e.ipam.RequestAddress(ipam.AddressRequest{PoolID: pool, Address: want})
	if err != nil {
		e.t.Fatalf("RequestAddress %s %q: %v", pool, want, err)
	}
	return r.Address
}

func (e *env) gateway(pool string) string {
	e.t.Helper()
	r, err := e.ipam.RequestAddress(ipam.AddressRequest{PoolID: pool, Options: map[string]string{"RequestAddressType": "com.docker.network.gateway"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Address
}

func (e *env) network(id, subnet, gw string) {
	e.t.Helper()
	err := e.net.CreateNetwork(&api.CreateNetworkRequest{NetworkID: id,
		Options:  map[string]any{"com.docker.network.generic": map[string]any{}},
		IPv4Data: []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: subnet, Gateway: gw}}})
	if err != nil {
		e.t.Fatalf("CreateNetwork %s: %v", id[:12], err)
	}
}

func (e *env) endpoint(netID, epID, addr string) {
	e.t.Helper()
	_, err := e.net.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netID, EndpointID: epID,
		Interface: &api.EndpointInterface{Address: addr}, Options: map[string]any{}})
	if err != nil {
		e.t.Fatalf("CreateEndpoint %s: %v", epID[:12], err)
	}
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

func master(name string) string {
	out, _ := exec.Command("ip", "-o", "link", "show", name).Output()
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "master" {
			return f[i+1]
		}
	}
	return ""
}

// dockerNet is what the fake Docker answers for GET /networks/{id}.
type dockerNet struct {
	ID     string `json:"Id"`
	Name   string
	Driver string
	IPAM   struct {
		Driver string
		Config []dockerPool
	}
	Containers map[string]dockerEndpoint
}

type dockerPool struct {
	Subnet, IPRange, Gateway string            `json:",omitempty"`
	AuxiliaryAddresses       map[string]string `json:",omitempty"`
}

type dockerEndpoint struct{ Name, EndpointID, IPv4Address, IPv6Address string }

// fakeDocker serves GET /v1.41/networks[/{id}] on a unix socket. While
// hang is set, every request waits until released (or the client gives up).
type fakeDocker struct {
	sock     string
	mu       sync.Mutex
	nets     []dockerNet
	hang     chan struct{} // closed: answer again
	asked    chan struct{} // gets a value for each request that arrives
	srv      *http.Server
	listener net.Listener
}

// dockerSock is a path for a fake Docker's socket, in a fresh directory.
func dockerSock(t testing.TB) string { return filepath.Join(t.TempDir(), "docker.sock") }

func newFakeDocker(t testing.TB, sock string, nets ...dockerNet) *fakeDocker {
	t.Helper()
	f := &fakeDocker{sock: sock, nets: nets, asked: make(chan struct{}, 100)}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f.listener = ln
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve)}
	go f.srv.Serve(ln)
	t.Cleanup(f.close)
	return f
}

func (f *fakeDocker) close() {
	f.mu.Lock()
	if f.hang != nil {
		close(f.hang)
		f.hang = nil
	}
	f.mu.Unlock()
	f.srv.Close()
}

func (f *fakeDocker) set(nets ...dockerNet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nets = nets
}

// hangs makes requests wait until the returned function is called.
func (f *fakeDocker) hangs() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := make(chan struct{})
	f.hang = h
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.hang == h {
			close(h)
			f.hang = nil
		}
	}
}

func (f *fakeDocker) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case f.asked <- struct{}{}:
	default:
	}
	f.mu.Lock()
	hang, nets := f.hang, f.nets
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodGet {
		http.Error(w, "read only", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/v1.41/networks" {
		list := []map[string]string{}
		for _, n := range nets {
			list = append(list, map[string]string{"Id": n.ID})
		}
		json.NewEncoder(w).Encode(list)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/v1.41/networks/")
	for _, n := range nets {
		if ok && n.ID == id {
			json.NewEncoder(w).Encode(n)
			return
		}
	}
	http.Error(w, `{"message":"no such network"}`, http.StatusNotFound)
}
