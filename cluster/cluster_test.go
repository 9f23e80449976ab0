package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mynet/mynet/cluster/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// shared is one real etcd for the tests that do not stop it; each test keeps
// to its own key prefix.
var shared *etcdtest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mynet-cluster-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared, err = etcdtest.New(etcdtest.Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests need a real etcd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	shared.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

type opt func(*Config)

func withCooldown(d time.Duration) opt { return func(c *Config) { c.Cooldown = d } }
func withTimeout(d time.Duration) opt  { return func(c *Config) { c.Timeout = d } }
func withTTL(d time.Duration) opt      { return func(c *Config) { c.LeaseTTL = d } }

// host is one simulated host's client on the test's own prefix.
func host(t *testing.T, srv *etcdtest.Server, id string, opts ...opt) *Client {
	t.Helper()
	cfg := Config{
		Endpoints: srv.Endpoints(),
		HostID:    id,
		Advertise: netip.MustParseAddr("192.0.2." + fmt.Sprint(len(id)+int(id[len(id)-1])%200)),
		Prefix:    "/t/" + t.Name() + "/",
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// joinBlue joins each host in turn to the cluster network blue,
// 10.60.0.0/24, and returns it as the first host's join answered.
func joinBlue(t *testing.T, hosts ...*Client) Network {
	t.Helper()
	var blue Network
	for i, h := range hosts {
		n, _, err := h.Join(context.Background(), PoolSpec{Name: "blue", Subnet: pfx("10.60.0.0/24")})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			blue = n
		}
	}
	return blue
}

func TestJoinDefinesThenJoinsAndRefusesOtherSettings(t *testing.T) {
	ctx := context.Background()
	a, b := host(t, shared, "hosta"), host(t, shared, "hostb")

	n, _, err := a.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.60.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if n.Subnet != pfx("10.60.0.0/24") || n.VNI != FirstVNI || n.CreatedBy != "hosta" {
		t.Fatalf("defined network = %+v", n)
	}
	// A later host omits --subnet and gets the same one.
	n2, _, err := b.Join(ctx, PoolSpec{Name: "blue"})
	if err != nil {
		t.Fatal(err)
	}
	if n2.Subnet != n.Subnet || n2.VNI != n.VNI || len(n2.Members) != 2 {
		t.Fatalf("joined network = %+v", n2)
	}
	// Joining again changes nothing.
	if _, _, err := b.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.60.0.0/24")}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		spec PoolSpec
		want string
	}{
		{PoolSpec{Name: "blue", Subnet: pfx("10.61.0.0/24")}, "cluster network blue already exists with subnet=10.60.0.0/24; this request asks for subnet=10.61.0.0/24"},
		{PoolSpec{Name: "blue", Range: pfx("10.60.0.128/25")}, "ip-range=(none); this request asks for ip-range=10.60.0.128/25"},
		{PoolSpec{Name: "blue", Options: map[string]string{"x": "1"}}, "ipam-opt x=(none); this request asks for ipam-opt x=1"},
		{PoolSpec{Name: "red", Subnet: pfx("10.60.0.0/16")}, "subnet 10.60.0.0/16 overlaps subnet 10.60.0.0/24 of cluster network blue"},
		{PoolSpec{Name: "bad/name", Subnet: pfx("10.62.0.0/24")}, `cluster network name "bad/name"`},
		{PoolSpec{Name: "green", Subnet: pfx("10.62.0.0/24"), Range: pfx("10.63.0.0/25")}, "ip-range 10.63.0.0/25 is not inside subnet 10.62.0.0/24"},
		{PoolSpec{Name: "green"}, "new cluster network green needs an IPv4 subnet"},
	} {
		_, _, err := b.Join(ctx, tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Join(%+v) = %v; want an error containing %q", tc.spec, err, tc.want)
		}
	}
	// Refusals changed nothing.
	nets, err := a.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 || nets[0].Name != "blue" || len(nets[0].Members) != 2 {
		t.Fatalf("networks after refusals = %+v", nets)
	}
}

func TestDefineSetsBackendOnceAndRefusesAnother(t *testing.T) {
	ctx := context.Background()
	a, b, c := host(t, shared, "hosta"), host(t, shared, "hostb"), host(t, shared, "hostc")
	joinBlue(t, a, b)
	vx := Driver{Backend: "vxlan", Options: map[string]string{"mtu": "1400"}}
	if _, err := a.Define(ctx, "blue", vx, "netA"); err != nil {
		t.Fatal(err)
	}
	_, err := b.Define(ctx, "blue", Driver{Backend: "bridge"}, "netB")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "backend=vxlan; this request asks for backend=bridge") {
		t.Fatalf("other backend: %v", err)
	}
	_, err = b.Define(ctx, "blue", Driver{Backend: "vxlan", Options: map[string]string{"mtu": "1300"}}, "netB")
	if err == nil || !strings.Contains(err.Error(), "option mtu=1400; this request asks for option mtu=1300") {
		t.Fatalf("other option: %v", err)
	}
	n, err := b.Define(ctx, "blue", vx, "netB")
	if err != nil {
		t.Fatal(err)
	}
	if n.Members["hosta"].DockerNetwork != "netA" || n.Members["hostb"].DockerNetwork != "netB" {
		t.Fatalf("members = %+v", n.Members)
	}
	// A host that did not join (its pool request never came) is refused.
	if _, err := c.Define(ctx, "blue", vx, "netC"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("define by a non-member: %v", err)
	}
}

func TestConcurrentDefinitionsOneWins(t *testing.T) {
	ctx := context.Background()
	const hosts = 6
	clients := make([]*Client, hosts)
	for i := range clients {
		clients[i] = host(t, shared, fmt.Sprintf("host%d", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, hosts)
	got := make([]Network, hosts)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _, errs[i] = c.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx(fmt.Sprintf("10.70.%d.0/24", i))})
		}()
	}
	wg.Wait()
	winners := 0
	var subnet netip.Prefix
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			subnet = got[i].Subnet
		case !errors.Is(err, ErrConflict):
			t.Errorf("host%d: %v", i, err)
		}
	}
	n, _, err := clients[0].Network(ctx, "blue")
	if err != nil {
		t.Fatal(err)
	}
	if winners != 1 || n.Subnet != subnet || len(n.Members) != 1 {
		t.Fatalf("%d winners, stored %+v", winners, n)
	}
	// Everyone asking for the stored subnet at once: all members.
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := c.Join(ctx, PoolSpec{Name: "blue", Subnet: subnet}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n, _, _ = clients[0].Network(ctx, "blue"); len(n.Members) != hosts {
		t.Fatalf("members = %v", n.Members)
	}
}

func TestAutomaticSubnetAvoidsOtherClusterNetworks(t *testing.T) {
	ctx := context.Background()
	a := host(t, shared, "hosta")
	if _, _, err := a.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.208.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	var seen []netip.Prefix
	pick := func(taken []netip.Prefix) (netip.Prefix, error) {
		seen = taken
		for i := 0; i < 10; i++ {
			p := pfx(fmt.Sprintf("10.208.%d.0/24", i))
			free := true
			for _, q := range taken {
				free = free && !q.Overlaps(p)
			}
			if free {
				return p, nil
			}
		}
		return netip.Prefix{}, errors.New("none free")
	}
	n, _, err := a.Join(ctx, PoolSpec{Name: "red", Pick: pick})
	if err != nil {
		t.Fatal(err)
	}
	if n.Subnet != pfx("10.208.1.0/24") || !n.Automatic || len(seen) != 1 || seen[0] != pfx("10.208.0.0/24") {
		t.Fatalf("automatic network %+v, taken %v", n, seen)
	}
	// A later host without a subnet gets the automatic one, without picking.
	b := host(t, shared, "hostb")
	n2, _, err := b.Join(ctx, PoolSpec{Name: "red", Pick: func([]netip.Prefix) (netip.Prefix, error) {
		t.Error("Pick called for an existing network")
		return netip.Prefix{}, nil
	}})
	if err != nil || n2.Subnet != n.Subnet {
		t.Fatalf("second host: %+v, %v", n2, err)
	}
}

func TestLastLeaveReleasesNetworkVNIAndRecords(t *testing.T) {
	ctx := context.Background()
	a, b := host(t, shared, "hosta"), host(t, shared, "hostb")
	blue := joinBlue(t, a, b)
	if _, err := a.Claim(ctx, "blue", ip("10.60.0.2"), KindEndpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, Endpoint{Network: "blue", IP: ip("10.60.0.2"), MAC: "02:42:0a:3c:00:02"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := b.Network(ctx, "blue"); err != nil || len(n.Members) != 1 {
		t.Fatalf("after the first leave: %+v, %v", n, err)
	}
	if err := b.Leave(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctx, "blue"); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, _, err := b.Network(ctx, "blue"); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("network after the last leave: %v", err)
	}
	for _, prefix := range []string{a.keys.addrs("blue"), a.keys.endpoints("blue")} {
		resp, err := a.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			t.Fatalf("%s: %d records left, %v", prefix, resp.Count, err)
		}
	}
	// The subnet is free again, the VNI is not handed out at once.
	n, _, err := a.Join(ctx, PoolSpec{Name: "blue2", Subnet: pfx("10.60.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if n.VNI == blue.VNI {
		t.Fatalf("VNI %d handed out again at once", n.VNI)
	}
}

func TestNextVNIWrapsAndSkipsUsed(t *testing.T) {
	idx := Index{Networks: map[string]IndexEntry{"a": {VNI: FirstVNI}, "b": {VNI: LastVNI}}, LastVNI: LastVNI - 1}
	v, err := nextVNI(idx)
	if err != nil || v != FirstVNI+1 {
		t.Fatalf("nextVNI = %d, %v; want %d", v, err, FirstVNI+1)
	}
}

func TestClaimsAreUniqueUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	const hosts, workers = 3, 8
	clients := make([]*Client, hosts)
	for i := range clients {
		clients[i] = host(t, shared, fmt.Sprintf("host%d", i))
		if _, _, err := clients[i].Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.60.0.0/26")}); err != nil {
			t.Fatal(err)
		}
	}
	// Every worker on every host tries every address, all in the same order:
	// the worst case for collisions.
	var mu sync.Mutex
	owner := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for _, c := range clients {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for a := ip("10.60.0.1"); a.Compare(ip("10.60.0.62")) <= 0; a = a.Next() {
					rec, err := c.Claim(ctx, "blue", a, KindEndpoint)
					if errors.Is(err, ErrTaken) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if prev, dup := owner[a]; dup {
						t.Errorf("address %s handed out twice: %s and %s", a, prev, rec.Request)
					}
					owner[a] = rec.Request
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(owner) != 62 {
		t.Fatalf("%d addresses claimed, want 62", len(owner))
	}
	recs, err := clients[0].Addresses(ctx, "blue")
	if err != nil {
		t.Fatal(err)
	}
	for a, rec := range recs {
		if owner[a] != rec.Request {
			t.Errorf("address %s: etcd says request %s, the winner was %s", a, rec.Request, owner[a])
		}
	}
}

func TestReleasedAddressCoolsDownBeforeReuse(t *testing.T) {
	ctx := context.Background()
	const cool = 700 * time.Millisecond
	a, b := host(t, shared, "hosta", withCooldown(cool)), host(t, shared, "hostb", withCooldown(cool))
	joinBlue(t, a, b)
	x := ip("10.60.0.9")
	if _, err := a.Claim(ctx, "blue", x, KindEndpoint); err != nil {
		t.Fatal(err)
	}
	_, err := b.Claim(ctx, "blue", x, KindEndpoint)
	var taken *TakenError
	if !errors.As(err, &taken) || taken.Held.Host != "hosta" || !taken.Until.IsZero() {
		t.Fatalf("claim of a held address: %v", err)
	}
	if err := b.Release(ctx, "blue", x); err != nil { // not b's: left alone
		t.Fatal(err)
	}
	if recs, _ := a.Addresses(ctx, "blue"); !recs[x].Released.IsZero() {
		t.Fatal("another host's release freed the address")
	}
	if err := a.Release(ctx, "blue", x); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, "blue", x); err != nil { // idempotent
		t.Fatal(err)
	}
	released := time.Now()
	_, err = b.Claim(ctx, "blue", x, KindEndpoint)
	if !errors.As(err, &taken) || taken.Until.IsZero() || !strings.Contains(err.Error(), "is not handed out again before") {
		t.Fatalf("claim during the cool-down: %v", err)
	}
	time.Sleep(cool - time.Since(released) + 50*time.Millisecond)
	rec, err := b.Claim(ctx, "blue", x, KindEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Gen != 2 || rec.Host != "hostb" {
		t.Fatalf("reclaimed record %+v; want generation 2 held by hostb", rec)
	}
}

func TestGatewayIsSharedAndSetOnce(t *testing.T) {
	ctx := context.Background()
	a, b := host(t, shared, "hosta"), host(t, shared, "hostb")
	joinBlue(t, a, b)
	gw := ip("10.60.0.1")
	for _, h := range []*Client{a, b} {
		if _, err := h.Claim(ctx, "blue", gw, KindGateway); err != nil {
			t.Fatal(err)
		}
		got, err := h.SetGateway(ctx, "blue", gw)
		if err != nil || got != gw {
			t.Fatalf("SetGateway = %s, %v", got, err)
		}
	}
	if got, _ := b.SetGateway(ctx, "blue", ip("10.60.0.254")); got != gw {
		t.Fatalf("a second gateway replaced the first: %s", got)
	}
	if _, err := b.Claim(ctx, "blue", gw, KindEndpoint); !errors.Is(err, ErrTaken) {
		t.Fatalf("endpoint claim of the gateway: %v", err)
	}
	if err := a.Release(ctx, "blue", gw); err != nil {
		t.Fatal(err)
	}
	if recs, _ := a.Addresses(ctx, "blue"); !recs[gw].Released.IsZero() {
		t.Fatal("a host released the shared gateway")
	}
}

func TestClaimInUnknownNetworkRefused(t *testing.T) {
	a := host(t, shared, "hosta")
	if _, err := a.Claim(context.Background(), "nope", ip("10.60.0.2"), KindEndpoint); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("claim in a missing network: %v", err)
	}
}

// lostAnswerKV commits transactions but reports a timeout for the next n of
// them, as etcd does when the answer to a committed request is lost.
type lostAnswerKV struct {
	clientv3.KV
	mu sync.Mutex
	n  int
}

func (k *lostAnswerKV) Txn(ctx context.Context) clientv3.Txn {
	return &lostAnswerTxn{Txn: k.KV.Txn(ctx), kv: k}
}

type lostAnswerTxn struct {
	clientv3.Txn
	kv *lostAnswerKV
}

func (t *lostAnswerTxn) If(c ...clientv3.Cmp) clientv3.Txn  { t.Txn = t.Txn.If(c...); return t }
func (t *lostAnswerTxn) Then(o ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(o...); return t }
func (t *lostAnswerTxn) Else(o ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(o...); return t }
func (t *lostAnswerTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	t.kv.mu.Lock()
	defer t.kv.mu.Unlock()
	if err == nil && t.kv.n > 0 {
		t.kv.n--
		return nil, context.DeadlineExceeded
	}
	return resp, err
}

func TestClaimWhoseAnswerWasLostIsRecognisedAsWon(t *testing.T) {
	ctx := context.Background()
	a, b := host(t, shared, "hosta"), host(t, shared, "hostb")
	joinBlue(t, a, b)
	a.cli.KV = &lostAnswerKV{KV: a.cli.KV, n: 1}
	rec, err := a.Claim(ctx, "blue", ip("10.60.0.5"), KindEndpoint)
	if err != nil {
		t.Fatalf("claim whose answer was lost: %v", err)
	}
	if rec.Host != "hosta" {
		t.Fatalf("record %+v", rec)
	}
	// Another host's record is not mistaken for ours after a lost answer:
	// the read-back finds b's request, so the claim fails.
	if _, err := b.Claim(ctx, "blue", ip("10.60.0.6"), KindEndpoint); err != nil {
		t.Fatal(err)
	}
	a.cli.KV = &lostAnswerKV{KV: a.cli.KV, n: 1}
	if _, err := a.Claim(ctx, "blue", ip("10.60.0.6"), KindEndpoint); !errors.Is(err, ErrTaken) {
		t.Fatalf("claim of b's address whose answer was lost: %v", err) // the read-back finds b's record
	}
}

func TestPublishNeedsTheAddressAndViewFollows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := host(t, shared, "hosta"), host(t, shared, "hostb")
	joinBlue(t, a, b)
	v := NewView()
	go b.Follow(ctx, v)

	if _, err := a.Publish(ctx, Endpoint{Network: "blue", IP: ip("10.60.0.7"), MAC: "02:42:0a:3c:00:07"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("publish of an unclaimed address: %v", err)
	}
	if _, err := b.Claim(ctx, "blue", ip("10.60.0.8"), KindEndpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, Endpoint{Network: "blue", IP: ip("10.60.0.8")}); !errors.Is(err, ErrTaken) {
		t.Fatalf("publish of another host's address: %v", err)
	}
	if _, err := a.Claim(ctx, "blue", ip("10.60.0.7"), KindEndpoint); err != nil {
		t.Fatal(err)
	}
	e, err := a.Publish(ctx, Endpoint{Network: "blue", IP: ip("10.60.0.7"), MAC: "02:42:0a:3c:00:07", EndpointID: "ep7"})
	if err != nil {
		t.Fatal(err)
	}
	if e.VTEP != a.Advertise() || e.Host != "hosta" || e.Gen != 1 {
		t.Fatalf("published %+v", e)
	}
	waitView(t, v, "blue", func(m map[netip.Addr]Endpoint) bool { return m[ip("10.60.0.7")].MAC == "02:42:0a:3c:00:07" })
	if err := b.Withdraw(ctx, "blue", ip("10.60.0.7")); err != nil { // not b's: left alone
		t.Fatal(err)
	}
	if err := a.Withdraw(ctx, "blue", ip("10.60.0.7")); err != nil {
		t.Fatal(err)
	}
	waitView(t, v, "blue", func(m map[netip.Addr]Endpoint) bool { return len(m) == 0 })
}

func waitView(t *testing.T, v *View, name string, ok func(map[netip.Addr]Endpoint) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !ok(v.Network(name)) {
		select {
		case <-v.Changed():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("view of %s never matched; it holds %+v", name, v.Network(name))
		}
	}
}

func TestFollowFromACompactedRevisionListsAgain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := host(t, shared, "hosta")
	if _, _, err := a.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.60.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	start, err := a.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	old := start.Header.Revision
	for i := 2; i < 6; i++ {
		addr := ip(fmt.Sprintf("10.60.0.%d", i))
		if _, err := a.Claim(ctx, "blue", addr, KindEndpoint); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Publish(ctx, Endpoint{Network: "blue", IP: addr}); err != nil {
			t.Fatal(err)
		}
	}
	now, err := a.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.Compact(ctx, now.Header.Revision); err != nil {
		t.Fatal(err)
	}
	v := NewView()
	go a.follow(ctx, v, old) // as if it had been away since old
	waitView(t, v, "blue", func(m map[netip.Addr]Endpoint) bool { return len(m) == 4 })
	if _, _, relists, _ := v.Status(); relists != 1 {
		t.Fatalf("relists = %d, want 1 (the compacted watch forces one)", relists)
	}
}

func TestLeaseOwnsLivenessOnly(t *testing.T) {
	ctx := context.Background()
	a := host(t, shared, "hosta", withTTL(2*time.Second))
	b := host(t, shared, "hostb")
	for _, h := range []*Client{a, b} {
		if err := h.Register(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.Join(ctx, PoolSpec{Name: "blue", Subnet: pfx("10.60.0.0/24")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Claim(ctx, "blue", ip("10.60.0.2"), KindEndpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, Endpoint{Network: "blue", IP: ip("10.60.0.2")}); err != nil {
		t.Fatal(err)
	}
	status := func(id string) HostStatus {
		t.Helper()
		hs, err := b.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.ID == id {
				return h
			}
		}
		t.Fatalf("host %s not listed in %+v", id, hs)
		return HostStatus{}
	}
	if s := status("hosta"); !s.Alive || s.Addresses != 1 || s.Endpoints != 1 || len(s.Networks) != 1 {
		t.Fatalf("hosta = %+v", s)
	}
	if err := b.Forget(ctx, "hosta"); !errors.Is(err, ErrAlive) {
		t.Fatalf("forget of a live host: %v", err)
	}
	// hosta vanishes without a word (no revoke): its lease runs out.
	a.cli.Close()
	deadline := time.Now().Add(10 * time.Second)
	for status("hosta").Alive {
		if time.Now().After(deadline) {
			t.Fatal("hosta still alive 10s after its 2s lease stopped being renewed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := status("hosta")
	if s.Addresses != 1 || s.Endpoints != 1 || len(s.Networks) != 1 || s.Advertise != a.Advertise() {
		t.Fatalf("hosta after its lease expired = %+v: records must outlive the lease", s)
	}
	if _, err := b.Claim(ctx, "blue", ip("10.60.0.2"), KindEndpoint); !errors.Is(err, ErrTaken) {
		t.Fatalf("a dead host's address was handed out: %v", err)
	}

	// The operator forgets it: addresses cool down, endpoints and membership go.
	if err := b.Forget(ctx, "nosuch"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "hosta") {
		t.Fatalf("forget of an unknown host: %v", err)
	}
	if err := b.Forget(ctx, a.Advertise().String()); err != nil {
		t.Fatal(err)
	}
	hs, _ := b.Hosts(ctx)
	for _, h := range hs {
		if h.ID == "hosta" {
			t.Fatalf("hosta still listed: %+v", h)
		}
	}
	n, _, _ := b.Network(ctx, "blue")
	if _, member := n.Members["hosta"]; member {
		t.Fatal("hosta still a member")
	}
	recs, _ := b.Addresses(ctx, "blue")
	if recs[ip("10.60.0.2")].Released.IsZero() {
		t.Fatal("hosta's address was not released")
	}
	if eps, _ := b.Endpoints(ctx, "blue"); len(eps) != 0 {
		t.Fatalf("endpoints left: %+v", eps)
	}
}

func TestHostComesBackAliveWithTheSameRecords(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := host(t, shared, "hosta")
	go a.Run(ctx)
	b := host(t, shared, "hostb")
	waitAlive(t, b, "hosta", true)
	a.Close()
	waitAlive(t, b, "hosta", false) // Close revokes at once
	a2 := host(t, shared, "hosta")
	go a2.Run(ctx)
	waitAlive(t, b, "hosta", true)
}

func waitAlive(t *testing.T, c *Client, id string, alive bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hs, err := c.Hosts(context.Background())
		if err == nil {
			for _, h := range hs {
				if h.ID == id && h.Alive == alive {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s alive=%v never seen (last %+v, %v)", id, alive, hs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEtcdAwayCallsFailFastNamingItAndTheViewCatchesUp(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const timeout = 1500 * time.Millisecond
	a, b := host(t, srv, "hosta", withTimeout(timeout)), host(t, srv, "hostb", withTimeout(timeout))
	joinBlue(t, a, b)
	v := NewView()
	go b.Follow(ctx, v)
	publish := func(addr string) error { // Reassert: a retry after a half-done attempt holds it already
		if _, err := a.Reassert(ctx, "blue", ip(addr), KindEndpoint); err != nil {
			return err
		}
		_, err := a.Publish(ctx, Endpoint{Network: "blue", IP: ip(addr)})
		return err
	}
	if err := publish("10.60.0.2"); err != nil {
		t.Fatal(err)
	}
	waitView(t, v, "blue", func(m map[netip.Addr]Endpoint) bool { return len(m) == 1 })

	for _, away := range []struct {
		name       string
		take, back func()
	}{
		{"paused", srv.Pause, srv.Resume},
		{"stopped", srv.Stop, func() {
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		before := len(v.Network("blue"))
		away.take()
		start := time.Now()
		_, err := a.Claim(ctx, "blue", ip("10.60.0.99"), KindEndpoint)
		took := time.Since(start)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), srv.Endpoint()) {
			t.Fatalf("%s: claim = %v; want an error naming etcd at %s", away.name, err, srv.Endpoint())
		}
		t.Logf("%s: claim failed after %s: %v", away.name, took.Round(time.Millisecond), err)
		if took > 2*timeout+time.Second { // the read-back of a lost answer may add half a timeout
			t.Errorf("%s: claim took %s with a %s timeout", away.name, took, timeout)
		}
		if m := v.Network("blue"); len(m) != before {
			t.Fatalf("%s: the view dropped endpoints while etcd was away: %+v", away.name, m)
		}
		away.back()
		// What changes after etcd is back reaches the view.
		var err2 error
		deadline := time.Now().Add(20 * time.Second)
		next := map[string]string{"paused": "10.60.0.3", "stopped": "10.60.0.4"}[away.name]
		for err2 = publish(next); err2 != nil && time.Now().Before(deadline); err2 = publish(next) {
			time.Sleep(200 * time.Millisecond)
		}
		if err2 != nil {
			t.Fatalf("%s: etcd back but calls still fail: %v", away.name, err2)
		}
		want := map[string]int{"paused": 2, "stopped": 3}[away.name]
		waitView(t, v, "blue", func(m map[netip.Addr]Endpoint) bool { return len(m) == want })
	}
}

// With no connection to etcd a call fails after connectWait, not after the
// whole Timeout, and says etcd is unreachable.
func TestEtcdGoneFailsWithoutWaitingTheTimeout(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	const timeout = 20 * time.Second
	a := host(t, srv, "hosta", withTimeout(timeout))
	joinBlue(t, a)
	srv.Stop()
	for deadline := time.Now().Add(10 * time.Second); a.connected(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client still counts itself connected 10s after etcd stopped")
		}
	}
	start := time.Now()
	_, err := a.Claim(context.Background(), "blue", ip("10.60.0.99"), KindEndpoint)
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "etcd at "+srv.Endpoint()+" is unreachable") {
		t.Fatalf("claim = %v; want etcd at %s named unreachable", err, srv.Endpoint())
	}
	if took >= timeout/2 {
		t.Errorf("claim took %s to fail: it waited for the %s timeout, not %s", took, timeout, connectWait)
	}
	t.Logf("claim failed after %s: %v", took.Round(time.Millisecond), err)
}

// Reconnected stays quiet while the connection holds and fires once etcd is
// back after an outage, so the reconciles waiting for their interval run then.
func TestReconnectedFiresWhenEtcdComesBack(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	a := host(t, srv, "hosta")
	joinBlue(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	back := a.Reconnected(ctx)
	select {
	case <-back:
		t.Fatal("Reconnected fired while etcd was up all along")
	case <-time.After(500 * time.Millisecond):
	}
	srv.Stop()
	for deadline := time.Now().Add(10 * time.Second); a.connected(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client still counts itself connected 10s after etcd stopped")
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-back:
		t.Logf("Reconnected fired %s after etcd started again", time.Since(start).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("Reconnected did not fire within 60s of etcd starting again")
	}
	if _, err := a.Claim(context.Background(), "blue", ip("10.60.0.98"), KindEndpoint); err != nil {
		t.Fatalf("claim after the reconnect: %v", err)
	}
}

// Docker asks for a dual-stack network's IPv4 and IPv6 pools one by one: the
// IPv6 request adds its pool to the network the IPv4 one defined, until a
// host's network driver has defined the network; after that the network's
// families are fixed.
func TestIPv6PoolJoinsTheNetworkUntilItIsDefined(t *testing.T) {
	ctx := context.Background()
	a, b, c := host(t, shared, "hosta"), host(t, shared, "hostb"), host(t, shared, "hostc")
	joinBlue(t, a)
	n, joined, err := a.Join(ctx, PoolSpec{Name: "blue", V6: true, Subnet: pfx("fd00:60::/64")})
	if err != nil {
		t.Fatal(err)
	}
	if joined || n.Subnet != pfx("10.60.0.0/24") || n.Subnet6 != pfx("fd00:60::/64") || len(n.Members) != 1 {
		t.Fatalf("after the IPv6 request: joined %v, %+v", joined, n)
	}
	// A later host takes both pools without giving them; the gateways are
	// one per family.
	if _, _, err := b.Join(ctx, PoolSpec{Name: "blue"}); err != nil {
		t.Fatal(err)
	}
	if n, _, err = b.Join(ctx, PoolSpec{Name: "blue", V6: true}); err != nil || n.Subnet6 != pfx("fd00:60::/64") {
		t.Fatalf("later host's IPv6 pool: %+v, %v", n, err)
	}
	for _, gw := range []netip.Addr{ip("10.60.0.1"), ip("fd00:60::1")} {
		if got, err := b.SetGateway(ctx, "blue", gw); err != nil || got != gw {
			t.Fatalf("SetGateway(%s) = %s, %v", gw, got, err)
		}
	}
	if n, _, _ := a.Network(ctx, "blue"); n.Gateway != ip("10.60.0.1") || n.Gateway6 != ip("fd00:60::1") {
		t.Fatalf("gateways %s and %s", n.Gateway, n.Gateway6)
	}
	if _, err := b.Claim(ctx, "blue", ip("fd00:60::5"), KindEndpoint); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Claim(ctx, "blue", ip("fd00:60::5"), KindEndpoint); !errors.Is(err, ErrTaken) {
		t.Fatalf("second claim of an IPv6 address: %v", err)
	}

	if _, err := a.Define(ctx, "blue", Driver{Backend: "vxlan"}, "netA"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec PoolSpec
		want string
	}{
		{PoolSpec{Name: "blue", V6: true, Subnet: pfx("fd00:61::/64")}, "already exists with IPv6 subnet=fd00:60::/64; this request asks for IPv6 subnet=fd00:61::/64"},
		{PoolSpec{Name: "blue", V6: true, Subnet: pfx("10.61.0.0/24")}, "10.61.0.0/24 is not an IPv6 prefix"},
		{PoolSpec{Name: "red", V6: true, Subnet: pfx("fd00:60::/48")}, "subnet fd00:60::/48 overlaps subnet fd00:60::/64 of cluster network blue"},
		{PoolSpec{Name: "red", V6: true}, "new cluster network red needs an IPv6 subnet"},
	} {
		if _, _, err := c.Join(ctx, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Join(%+v) = %v; want an error containing %q", tc.spec, err, tc.want)
		}
	}

	// An IPv4-only network, once defined, takes no IPv6 pool.
	if _, _, err := a.Join(ctx, PoolSpec{Name: "green", Subnet: pfx("10.62.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Define(ctx, "green", Driver{Backend: "vxlan"}, "netG"); err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Join(ctx, PoolSpec{Name: "green", V6: true, Subnet: pfx("fd00:62::/64")})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "already exists with IPv6 subnet=(none); this request asks for IPv6 subnet=fd00:62::/64") {
		t.Fatalf("IPv6 pool for a defined IPv4-only network: %v", err)
	}
	if n, _, _ := a.Network(ctx, "green"); n.Subnet6.IsValid() || len(n.Members) != 1 {
		t.Fatalf("the refusal changed the network: %+v", n)
	}
	// An IPv6-only network (Docker 28's --ipv4=false) is one too, and the
	// last member leaving frees its subnet for another network.
	if n, _, err := c.Join(ctx, PoolSpec{Name: "v6only", V6: true, Subnet: pfx("fd00:63::/64")}); err != nil || n.Subnet.IsValid() {
		t.Fatalf("IPv6-only network: %+v, %v", n, err)
	}
	if err := c.Leave(ctx, "v6only"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Join(ctx, PoolSpec{Name: "v6again", V6: true, Subnet: pfx("fd00:63::/64")}); err != nil {
		t.Fatalf("subnet of a removed network: %v", err)
	}
}
