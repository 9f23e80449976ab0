package ipam

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/cluster/etcdtest"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// One real etcd for the cluster tests of this package, started by the first
// test that needs it; each test keeps to its own key prefix.
var (
	etcdOnce sync.Once
	etcdSrv  *etcdtest.Server
	etcdDir  string
	etcdErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if etcdSrv != nil {
		etcdSrv.Stop()
	}
	if etcdDir != "" {
		os.RemoveAll(etcdDir)
	}
	os.Exit(code)
}

func sharedEtcd(t testing.TB) *etcdtest.Server {
	t.Helper()
	etcdOnce.Do(func() {
		if etcdDir, etcdErr = os.MkdirTemp("", "mynet-ipam-etcd-"); etcdErr == nil {
			etcdSrv, etcdErr = etcdtest.New(etcdtest.Options{Dir: etcdDir})
		}
	})
	if etcdErr != nil {
		t.Fatalf("cluster tests need a real etcd: %v", etcdErr)
	}
	return etcdSrv
}

// chost is one simulated host: its own state file, cluster client and IPAM.
type chost struct {
	t     testing.TB
	path  string
	store *state.Store
	cl    *cluster.Client
	d     *Driver
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newClusterHost(t testing.TB, srv *etcdtest.Server, n int, cfg cluster.Config) *chost {
	t.Helper()
	h := &chost{t: t, path: filepath.Join(t.TempDir(), "ipam.db")}
	s, err := state.Open(h.path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Endpoints = srv.Endpoints()
	cfg.HostID = s.InstanceID()
	cfg.Advertise = netip.AddrFrom4([4]byte{192, 0, 2, byte(n)})
	cfg.Prefix = "/t/" + t.Name() + "/"
	cfg.Log = quiet
	if h.cl, err = cluster.Open(cfg); err != nil {
		t.Fatal(err)
	}
	h.store = s
	h.open()
	t.Cleanup(func() { h.cl.Close(); h.store.Close() })
	return h
}

func (h *chost) open() {
	h.t.Helper()
	rs, _ := ParseRanges(DefaultRanges)
	d, err := New(Config{Store: h.store, Ranges: rs, Host: func() ([]netip.Prefix, error) { return nil, nil }, Log: quiet, Cluster: h.cl})
	if err != nil {
		h.t.Fatal(err)
	}
	h.d = d
}

// restart is a plugin restart: the same state file and cluster client.
func (h *chost) restart() {
	h.t.Helper()
	if err := h.store.Close(); err != nil {
		h.t.Fatal(err)
	}
	s, err := state.Open(h.path, state.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.store = s
	h.open()
}

func (h *chost) pool(name, subnet string, extra ...string) (PoolResponse, error) {
	opts := map[string]string{OptNetwork: name}
	for i := 0; i+1 < len(extra); i += 2 {
		opts[extra[i]] = extra[i+1]
	}
	return h.d.RequestPool(PoolRequest{AddressSpace: LocalSpace, Pool: subnet, Options: opts})
}

func (h *chost) mustPool(name, subnet string) PoolResponse {
	h.t.Helper()
	r, err := h.pool(name, subnet)
	if err != nil {
		h.t.Fatalf("RequestPool(network=%s, %q): %v", name, subnet, err)
	}
	return r
}

func (h *chost) addr(poolID, want string, gw bool) (string, error) {
	var opts map[string]string
	if gw {
		opts = map[string]string{optRequestType: gatewayType}
	}
	r, err := h.d.RequestAddress(AddressRequest{PoolID: poolID, Address: want, Options: opts})
	return r.Address, err
}

func (h *chost) mustAddr(poolID, want string, gw bool) string {
	h.t.Helper()
	a, err := h.addr(poolID, want, gw)
	if err != nil {
		h.t.Fatalf("RequestAddress(%s, %q, gateway=%v): %v", poolID, want, gw, err)
	}
	return a
}

// storedAddrs lists what the host's state file holds for a pool.
func (h *chost) storedAddrs(poolID string) map[netip.Addr]state.Address {
	h.t.Helper()
	out := map[netip.Addr]state.Address{}
	if err := h.store.View(func(tx *state.Tx) error {
		return tx.Addresses(poolID, func(a netip.Addr, r state.Address) error { out[a] = r; return nil })
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *chost) storedPools() []state.Pool {
	h.t.Helper()
	var ps []state.Pool
	h.store.View(func(tx *state.Tx) error { var err error; ps, err = tx.Pools(); return err })
	return ps
}

func TestClusterOptionWithoutClusterRefused(t *testing.T) {
	e := newEnv(t, DefaultRanges)
	_, err := e.d.RequestPool(PoolRequest{AddressSpace: LocalSpace, Pool: "10.60.0.0/24", Options: map[string]string{OptNetwork: "blue"}})
	if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "started without --cluster") || !strings.Contains(err.Error(), "network=blue") {
		t.Fatalf("network=blue without --cluster: %v", err)
	}
	if u := e.d.Usage(); len(u) != 0 {
		t.Fatalf("a refused request left pools: %+v", u)
	}
}

func TestClusterPoolSharedGatewayAndRefusals(t *testing.T) {
	srv := sharedEtcd(t)
	a, b := newClusterHost(t, srv, 1, cluster.Config{}), newClusterHost(t, srv, 2, cluster.Config{})

	pa := a.mustPool("blue", "10.60.0.0/24")
	if pa.PoolID != "cluster/blue/10.60.0.0/24" || pa.Pool != "10.60.0.0/24" {
		t.Fatalf("pool = %+v", pa)
	}
	pb := b.mustPool("blue", "") // later hosts may omit --subnet
	if pb.PoolID != pa.PoolID || pb.Pool != pa.Pool {
		t.Fatalf("second host's pool = %+v, first %+v", pb, pa)
	}
	if ga, gb := a.mustAddr(pa.PoolID, "", true), b.mustAddr(pb.PoolID, "", true); ga != "10.60.0.1/24" || gb != ga {
		t.Fatalf("gateways %s and %s; want 10.60.0.1/24 on both", ga, gb)
	}
	if name, ok := a.d.ClusterNetwork(netip.MustParsePrefix("10.60.0.0/24")); !ok || name != "blue" {
		t.Fatalf("ClusterNetwork = %q, %v", name, ok)
	}

	c := newClusterHost(t, srv, 3, cluster.Config{})
	for _, tc := range []struct {
		subnet string
		extra  []string
		want   string
	}{
		{"10.61.0.0/24", nil, "cluster network blue already exists with subnet=10.60.0.0/24; this request asks for subnet=10.61.0.0/24"},
		{"", []string{"mode", "x"}, "ipam-opt mode=(none); this request asks for ipam-opt mode=x"},
		{"10.60.0.0/16", nil, "subnet=10.60.0.0/24; this request asks for subnet=10.60.0.0/16"},
		{"10.60.0.1/24", nil, "not in network form"},
	} {
		_, err := c.pool("blue", tc.subnet, tc.extra...)
		if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("host c, network=blue subnet %q %v: %v; want a bad request containing %q", tc.subnet, tc.extra, err, tc.want)
		}
	}
	_, err := c.pool("red", "10.60.0.0/25")
	if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "overlaps subnet 10.60.0.0/24 of cluster network blue") {
		t.Errorf("overlapping cluster network: %v", err)
	}
	if ps := c.storedPools(); len(ps) != 0 {
		t.Fatalf("refusals left pools on host c: %+v", ps)
	}
	n, _, err := c.cl.Network(context.Background(), "blue")
	if err != nil || len(n.Members) != 2 {
		t.Fatalf("members after refusals: %+v, %v", n.Members, err)
	}
	// A second gateway request with another address is refused by name.
	if _, err := b.addr(pb.PoolID, "10.60.0.254", true); !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "gateway=10.60.0.1; this request asks for gateway=10.60.0.254") {
		t.Fatalf("other gateway: %v", err)
	}
}

func TestClusterPoolOverlappingALocalPoolRefusedAndLeft(t *testing.T) {
	srv := sharedEtcd(t)
	a := newClusterHost(t, srv, 1, cluster.Config{})
	if _, err := a.d.RequestPool(PoolRequest{AddressSpace: LocalSpace, Pool: "10.60.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	_, err := a.pool("blue", "10.60.5.0/24")
	if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "overlaps subnet 10.60.0.0/16 already used by another mynet network on this host") {
		t.Fatalf("cluster pool over a local pool: %v", err)
	}
	if _, _, err := a.cl.Network(context.Background(), "blue"); !errors.Is(err, cluster.ErrNoNetwork) {
		t.Fatalf("the refused definition stayed in etcd: %v", err)
	}
	// A second Docker network on the same host and cluster network is refused.
	a.mustPool("green", "10.61.0.0/24")
	if _, err := a.pool("green", ""); !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "already has a network on this host") {
		t.Fatalf("second network for green on one host: %v", err)
	}
	if n, _, err := a.cl.Network(context.Background(), "green"); err != nil || len(n.Members) != 1 {
		t.Fatalf("the refusal made the host leave green: %+v, %v", n, err)
	}
}

func TestClusterAddressesUniqueAcrossHostsUnderConcurrency(t *testing.T) {
	srv := sharedEtcd(t)
	const hosts, each = 3, 25
	hs := make([]*chost, hosts)
	ids := make([]string, hosts)
	for i := range hs {
		hs[i] = newClusterHost(t, srv, i+1, cluster.Config{})
		ids[i] = hs[i].mustPool("blue", "10.60.0.0/24").PoolID
		hs[i].mustAddr(ids[i], "", true)
	}
	var mu sync.Mutex
	owner := map[string]int{}
	var wg sync.WaitGroup
	for i, h := range hs {
		for range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := h.addr(ids[i], "", false)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if prev, dup := owner[a]; dup {
					t.Errorf("%s handed out to host %d and host %d", a, prev, i)
				}
				owner[a] = i
			}()
		}
	}
	wg.Wait()
	if len(owner) != hosts*each {
		t.Fatalf("%d distinct addresses, want %d", len(owner), hosts*each)
	}
	recs, err := hs[0].cl.Addresses(context.Background(), "blue")
	if err != nil {
		t.Fatal(err)
	}
	for a, i := range owner {
		ip := netip.MustParsePrefix(a).Addr()
		if recs[ip].Host != hs[i].cl.HostID() {
			t.Errorf("%s: etcd says host %q, it was handed out by %q", a, recs[ip].Host, hs[i].cl.HostID())
		}
		if _, ok := hs[i].storedAddrs(ids[i])[ip]; !ok {
			t.Errorf("%s missing from host %d's state file", a, i)
		}
	}
	for i, h := range hs {
		u := h.d.Usage()
		if len(u) != 1 || u[0].Cluster != "blue" || u[0].Used != each+1 {
			t.Errorf("host %d usage %+v; want %d used (its endpoints and the gateway)", i, u, each+1)
		}
	}
}

func TestClusterSpecificAddressHeldElsewhereAndCooldown(t *testing.T) {
	srv := sharedEtcd(t)
	cfg := cluster.Config{Cooldown: time.Hour}
	a, b := newClusterHost(t, srv, 1, cfg), newClusterHost(t, srv, 2, cfg)
	pa, pb := a.mustPool("blue", "10.60.0.0/29"), b.mustPool("blue", "")
	a.mustAddr(pa.PoolID, "", true)
	a.mustAddr(pa.PoolID, "10.60.0.5", false)
	_, err := b.addr(pb.PoolID, "10.60.0.5", false)
	if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "address 10.60.0.5 of cluster network blue is in use (endpoint, held by host "+a.cl.HostID()+")") {
		t.Fatalf("--ip held by another host: %v", err)
	}
	if _, ok := b.storedAddrs(pb.PoolID)[netip.MustParseAddr("10.60.0.5")]; ok {
		t.Fatal("a refused address was recorded")
	}
	// Fill the /29 (6 usable: gateway + 5) from both hosts.
	got := map[string]bool{"10.60.0.1/29": true, "10.60.0.5/29": true}
	for i := 0; len(got) < 6; i++ {
		h, id := a, pa.PoolID
		if i%2 == 1 {
			h, id = b, pb.PoolID
		}
		got[h.mustAddr(id, "", false)] = true
		if i > 10 {
			t.Fatalf("pool not full after %d requests: %v", i, got)
		}
	}
	if _, err := b.addr(pb.PoolID, "", false); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("request on a full cluster pool: %v", err)
	}
	// A releases one: it cools down, so B still finds the pool full.
	if err := a.d.ReleaseAddress(pa.PoolID, "10.60.0.5"); err != nil {
		t.Fatal(err)
	}
	_, err = b.addr(pb.PoolID, "", false)
	if !errors.Is(err, ErrPoolFull) {
		t.Fatalf("a just-released address was handed out again: %v", err)
	}
	_, err = b.addr(pb.PoolID, "10.60.0.5", false)
	if !errors.Is(err, protocol.ErrBadRequest) || !strings.Contains(err.Error(), "is not handed out again before") {
		t.Fatalf("--ip of a cooling address: %v", err)
	}
}

func TestClusterReleasePoolLeavesAndLastHostRemovesTheNetwork(t *testing.T) {
	srv := sharedEtcd(t)
	a, b := newClusterHost(t, srv, 1, cluster.Config{}), newClusterHost(t, srv, 2, cluster.Config{})
	pa, pb := a.mustPool("blue", ""), b.mustPool("blue", "") // automatic subnet
	if !strings.HasPrefix(pa.Pool, "10.2") || pa.Pool != pb.Pool {
		t.Fatalf("automatic cluster pool %s / %s", pa.Pool, pb.Pool)
	}
	a.mustAddr(pa.PoolID, "", true)
	x := a.mustAddr(pa.PoolID, "", false)
	if err := a.d.ReleaseAddress(pa.PoolID, strings.Split(x, "/")[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.d.ReleasePool(pa.PoolID); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, _, err := b.cl.Network(ctx, "blue"); err != nil || len(n.Members) != 1 {
		t.Fatalf("after host a left: %+v, %v", n, err)
	}
	if err := b.d.ReleasePool(pb.PoolID); err != nil {
		t.Fatal(err)
	}
	if err := b.d.ReleasePool(pb.PoolID); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, _, err := b.cl.Network(ctx, "blue"); !errors.Is(err, cluster.ErrNoNetwork) {
		t.Fatalf("network after the last host left: %v", err)
	}
}

func TestClusterRestartAndReconcile(t *testing.T) {
	srv := sharedEtcd(t)
	ctx := context.Background()
	a, b := newClusterHost(t, srv, 1, cluster.Config{}), newClusterHost(t, srv, 2, cluster.Config{})
	pa := a.mustPool("blue", "10.60.0.0/24")
	b.mustPool("blue", "")
	a.mustAddr(pa.PoolID, "", true)
	x := netip.MustParsePrefix(a.mustAddr(pa.PoolID, "", false)).Addr()

	a.restart()
	if err := a.d.ReconcileCluster(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if u := a.d.Usage(); len(u) != 1 || u[0].Used != 2 {
		t.Fatalf("usage after restart %+v", u)
	}

	// etcd lost the record (say, restored from an old backup): the reconcile
	// claims it again from this host's records.
	deleteKey(t, srv, "/t/"+t.Name()+"/addrs/blue/"+x.String())
	// An answer lost in a crash: etcd holds an address for a that a never recorded.
	lost := netip.MustParseAddr("10.60.0.77")
	if _, err := a.cl.Claim(ctx, "blue", lost, cluster.KindEndpoint); err != nil {
		t.Fatal(err)
	}
	// A pool released while etcd was away: a member without a pool.
	if _, _, err := a.cl.Join(ctx, cluster.PoolSpec{Name: "gone", Subnet: netip.MustParsePrefix("10.62.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	// mynet doctor's view first: found, nothing changed.
	var found []string
	for _, dr := range a.d.ClusterDrift(ctx, time.Hour, nil) {
		if dr.Fixed || dr.Error != "" {
			t.Errorf("report-only drift %+v", dr)
		}
		found = append(found, dr.Kind+" "+dr.Object)
	}
	sort.Strings(found)
	if want := []string{"cluster_address address " + x.String(), "cluster_membership cluster network gone"}; !slices.Equal(found, want) {
		t.Fatalf("drift found %q, want %q", found, want)
	}
	if recs, _ := a.cl.Addresses(ctx, "blue"); recs[x].Host != "" {
		t.Fatal("a report-only pass changed etcd")
	}
	if err := a.d.ReconcileCluster(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	recs, _ := a.cl.Addresses(ctx, "blue")
	if recs[x].Host != a.cl.HostID() || !recs[x].Released.IsZero() {
		t.Fatalf("%s after the reconcile: %+v", x, recs[x])
	}
	if !recs[lost].Released.IsZero() {
		t.Fatal("a claim younger than the grace was given back")
	}
	if _, _, err := a.cl.Network(ctx, "gone"); !errors.Is(err, cluster.ErrNoNetwork) {
		t.Fatalf("membership without a pool: %v", err)
	}
	if err := a.d.ReconcileCluster(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if recs, _ = a.cl.Addresses(ctx, "blue"); recs[lost].Released.IsZero() {
		t.Fatal("an unrecorded claim older than the grace was kept")
	}
	// b's request never hands out x (it is a's) nor the gateway.
	for range 20 {
		got := netip.MustParsePrefix(b.mustAddr("cluster/blue/10.60.0.0/24", "", false)).Addr()
		if got == x || got == netip.MustParseAddr("10.60.0.1") {
			t.Fatalf("host b got %s", got)
		}
	}
}

func TestClusterEtcdAwayFailsNamingItAndRecordsNothing(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	a := newClusterHost(t, srv, 1, cluster.Config{Timeout: time.Second})
	pa := a.mustPool("blue", "10.60.0.0/24")
	a.mustAddr(pa.PoolID, "", true)
	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	_, err := a.addr(pa.PoolID, "", false)
	if err == nil || !strings.Contains(err.Error(), "etcd at "+srv.Endpoint()) || errors.Is(err, protocol.ErrBadRequest) {
		t.Fatalf("RequestAddress with etcd paused: %v", err)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if got := a.storedAddrs(pa.PoolID); len(got) != 1 {
		t.Fatalf("recorded while etcd was away: %v", got)
	}
	if u := a.d.Usage(); u[0].Used != 1 {
		t.Fatalf("usage %+v after a failed request", u)
	}
	_, err = a.pool("red", "10.61.0.0/24")
	if err == nil || !strings.Contains(err.Error(), srv.Endpoint()) {
		t.Fatalf("RequestPool with etcd paused: %v", err)
	}
	if ps := a.storedPools(); len(ps) != 1 {
		t.Fatalf("pools after a failed request: %+v", ps)
	}
}

// deleteKey removes a key with a client of its own, outside mynet's: a
// test's way to lose a record the way a restored backup would.
func deleteKey(t *testing.T, srv *etcdtest.Server, key string) {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Delete(context.Background(), key)
	if err != nil || resp.Deleted != 1 {
		t.Fatalf("delete %s: %v (%d deleted)", key, err, resp.Deleted)
	}
}

// A dual-stack cluster network: Docker asks for the IPv4 and the IPv6 pool
// one by one. Both are cluster-wide, the reconcile compares them together
// (neither family's addresses look unrecorded to the other's pool), and the
// host leaves with its last pool.
func TestClusterDualStackPools(t *testing.T) {
	srv := sharedEtcd(t)
	ctx := context.Background()
	a, b := newClusterHost(t, srv, 1, cluster.Config{}), newClusterHost(t, srv, 2, cluster.Config{})
	v6 := func(h *chost, subnet string) (PoolResponse, error) {
		return h.d.RequestPool(PoolRequest{AddressSpace: LocalSpace, Pool: subnet, V6: true, Options: map[string]string{OptNetwork: "blue"}})
	}
	pa4 := a.mustPool("blue", "10.64.0.0/24")
	pa6, err := v6(a, "fd00:64::/64")
	if err != nil {
		t.Fatal(err)
	}
	pb4 := b.mustPool("blue", "")
	pb6, err := v6(b, "")
	if err != nil || pb6.Pool != "fd00:64::/64" || pb6.PoolID != pa6.PoolID || pb4.PoolID != pa4.PoolID {
		t.Fatalf("host b's pools %+v %+v, %v", pb4, pb6, err)
	}
	if _, err := v6(b, "10.65.0.0/24"); err == nil || !strings.Contains(err.Error(), "10.65.0.0/24 is not an IPv6 subnet") {
		t.Fatalf("IPv4 subnet for an IPv6 pool: %v", err)
	}
	gws := map[string]bool{}
	for _, h := range []*chost{a, b} {
		gws[h.mustAddr(pa6.PoolID, "", true)] = true
	}
	if len(gws) != 1 || !gws["fd00:64::1/64"] {
		t.Fatalf("IPv6 gateways %v, want fd00:64::1/64 on both hosts", gws)
	}
	seen := map[string]bool{}
	for range 10 {
		for _, h := range []*chost{a, b} {
			x := h.mustAddr(pa6.PoolID, "", false)
			if seen[x] || !strings.HasPrefix(x, "fd00:64::") {
				t.Fatalf("IPv6 address %s handed out twice or outside the subnet (seen %v)", x, seen)
			}
			// Short addresses, as Docker's: hosts spread over the first 64 Ki only.
			if !netip.MustParsePrefix(x).Addr().Less(netip.MustParseAddr("fd00:64::1:100")) {
				t.Fatalf("IPv6 address %s: past the first 64 Ki addresses of the /64", x)
			}
			seen[x] = true
		}
	}
	a.mustAddr(pa4.PoolID, "", false)

	// Every address of a is recorded in one of its two pools: the reconcile
	// finds nothing to give back, even with no grace.
	if drifts := a.d.ClusterDrift(ctx, 0, nil); len(drifts) != 0 {
		t.Fatalf("drift on a consistent dual-stack host: %+v", drifts)
	}
	// etcd lost the network (an old backup): the reconcile defines it again
	// with both pools and claims the addresses again.
	deleteKey(t, srv, "/t/"+t.Name()+"/networks/blue")
	if err := a.d.ReconcileCluster(ctx, 0); err != nil {
		t.Fatal(err)
	}
	n, _, err := a.cl.Network(ctx, "blue")
	if err != nil || n.Subnet != netip.MustParsePrefix("10.64.0.0/24") || n.Subnet6 != netip.MustParsePrefix("fd00:64::/64") {
		t.Fatalf("network after the reconcile: %+v, %v", n, err)
	}

	// Docker releases the pools one by one: the host leaves with the last.
	if err := a.d.ReleasePool(pa6.PoolID); err != nil {
		t.Fatal(err)
	}
	if n, _, err := a.cl.Network(ctx, "blue"); err != nil || n.Members[a.cl.HostID()].Joined.IsZero() {
		t.Fatalf("host a left with a pool still there: %+v, %v", n, err)
	}
	if err := a.d.ReleasePool(pa4.PoolID); err != nil {
		t.Fatal(err)
	}
	// (The record etcd lost named b as a member; the one the reconcile
	// made names only a, so a's leaving removes the network.)
	if n, _, err := a.cl.Network(ctx, "blue"); !errors.Is(err, cluster.ErrNoNetwork) {
		t.Fatalf("network after its last member left: %+v, %v", n, err)
	}
}
