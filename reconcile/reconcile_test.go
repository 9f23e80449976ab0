package reconcile

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/vishvananda/netns"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/ipam"
)

const (
	netA  = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111" // Docker has it; its bridge is deleted
	netB  = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222" // Docker lacks it
	netC  = "cccccccccccc3333333333333333333333333333333333333333333333333333" // Docker has it; its rules are deleted
	ep1   = "111111111111eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" // Docker has it
	ep2   = "222222222222eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" // Docker forgot it
	brA   = "mn-aaaaaaaaaaaa"
	brB   = "mn-bbbbbbbbbbbb"
	brC   = "mn-cccccccccccc"
	orphn = "mn-0123456789ab" // a marked link, and rules, no record claims
)

// dockerHas is Docker's view in the drift tests: network A (on our pool,
// with ep1 and an aux address) and network C (Docker's IPAM).
func dockerHas() []dockerNet {
	a := dockerNet{ID: netA, Name: "a", Driver: "mynet", Containers: map[string]dockerEndpoint{
		"ctr1": {Name: "c1", EndpointID: ep1, IPv4Address: "10.61.0.2/24"}}}
	a.IPAM.Driver = "mynet:latest"
	a.IPAM.Config = []dockerPool{{Subnet: "10.61.0.0/24", Gateway: "10.61.0.1", AuxiliaryAddresses: map[string]string{"router": "10.61.0.250"}}}
	c := dockerNet{ID: netC, Name: "c", Driver: "mynet"}
	c.IPAM.Driver = "default"
	c.IPAM.Config = []dockerPool{{Subnet: "10.62.0.0/24", Gateway: "10.62.0.1"}}
	return []dockerNet{a, c}
}

// plantDrift makes one drift of each kind the background repairs.
func (e *env) plantDrift() (poolA, unusedPool string) {
	e.t.Helper()
	poolA = e.pool("10.61.0.0/24")
	e.gateway(poolA)
	e.addr(poolA, "10.61.0.2")   // ep1's
	e.addr(poolA, "10.61.0.3")   // ep2's: Docker forgot ep2
	e.addr(poolA, "10.61.0.100") // an answer lost in a crash
	e.addr(poolA, "10.61.0.250") // --aux-address router=10.61.0.250
	unusedPool = e.pool("10.64.0.0/24")
	e.network(netA, "10.61.0.0/24", "10.61.0.1/24")
	e.endpoint(netA, ep1, "10.61.0.2/24")
	e.endpoint(netA, ep2, "10.61.0.3/24")
	e.network(netB, "10.63.0.0/24", "10.63.0.1/24")
	e.network(netC, "10.62.0.0/24", "10.62.0.1/24")

	run := func(args ...string) {
		e.t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			e.t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "link", "del", brA)
	if err := e.fw.RemoveNetwork(firewall.Network{ID: netC, Bridge: brC, Subnets: []netip.Prefix{netip.MustParsePrefix("10.62.0.0/24")}, ICC: true, Masquerade: true}); err != nil {
		e.t.Fatal(err)
	}
	run("ip", "link", "add", orphn, "type", "bridge")
	run("ip", "link", "set", orphn, "alias", "mynet:"+e.store.InstanceID())
	if err := e.fw.AddNetwork(firewall.Network{ID: "0123456789ab", Bridge: orphn, Subnets: []netip.Prefix{netip.MustParsePrefix("10.65.0.0/24")}}); err != nil {
		e.t.Fatal(err)
	}
	return poolA, unusedPool
}

func fixedKinds(ds []drift.Drift) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		if d.Fixed {
			m[d.Kind]++
		}
	}
	return m
}

// Each kind of drift is repaired by the background loop as doctor --fix
// would, logged and counted; a network or pool Docker lacks only once it has
// been missing for a whole interval.
func TestLoopRepairsEachKind(t *testing.T) {
	inNetns(t, func(e *env) {
		poolA, unusedPool := e.plantDrift()
		fake := newFakeDocker(t, dockerSock(t), dockerHas()...)
		const every = time.Hour
		l := e.loop(fake.sock, every)
		e.later(0)
		var outcomes []string
		l.OnRun = func(o string, _ time.Time) { outcomes = append(outcomes, o) }

		if o := l.Once(context.Background()); o != OK {
			t.Fatalf("first run: %s\n%s", o, e.log)
		}
		// What the kernel lacks or has in excess: at once.
		kernel := map[string]int{drift.LinksMissing: 1, drift.RulesMissing: 1, drift.OrphanLink: 1, drift.OrphanRules: 1}
		// What Docker lacks: only when still missing a whole interval later.
		docker := map[string]int{drift.EndpointUnknownToDocker: 1, drift.AddressUnused: 2, drift.NetworkUnknownToDocker: 1, drift.PoolUnused: 1}
		check := func(when string, want map[string]int, none map[string]int) {
			t.Helper()
			got := e.repaired()
			for k, n := range want {
				if got[k] != n {
					t.Errorf("%s: %d %s repaired, want %d (all: %v)\n%s", when, got[k], k, n, got, e.log)
				}
			}
			for k := range none {
				if got[k] != 0 {
					t.Errorf("%s: %d %s repaired, want none yet (all: %v)", when, got[k], k, got)
				}
			}
		}
		check("first run", kernel, docker)
		// Seen again within the interval: still held.
		l.Once(context.Background())
		check("second run, within the interval", kernel, docker)
		if !linkExists(brB) || !linkExists("mnh"+ep2[:12]) {
			t.Errorf("held network B or endpoint ep2 lost its link")
		}
		e.later(every)
		if o := l.Once(context.Background()); o != OK {
			t.Fatalf("run after the interval: %s\n%s", o, e.log)
		}
		check("run after the interval", docker, nil)
		ds, err := e.rep.Do(Run{View: mustView(t, fake.sock), HasView: true})
		if err != nil || len(ds) != 0 {
			t.Errorf("drift left after the background runs: %+v %v", ds, err)
		}
		for _, o := range outcomes {
			if o != OK {
				t.Errorf("outcomes %v, want every run ok", outcomes)
				break
			}
		}

		// Repaired for real.
		if master("mnh"+ep1[:12]) != brA {
			t.Errorf("ep1's veth is on %q, want the re-created %s", master("mnh"+ep1[:12]), brA)
		}
		for _, gone := range []string{"mnh" + ep2[:12], orphn, brB} {
			if linkExists(gone) {
				t.Errorf("%s still exists", gone)
			}
		}
		owned, _ := e.fw.Owned()
		if strings.Join(owned, " ") != brA+" "+brC {
			t.Errorf("bridges with rules: %v, want %s and %s", owned, brA, brC)
		}
		for _, u := range e.ipam.Usage() {
			if u.ID == unusedPool {
				t.Errorf("pool %s still allocated", unusedPool)
			}
			if u.ID == poolA && u.Used != 3 {
				t.Errorf("pool %s holds %d addresses, want 3 (gateway, ep1, aux)", poolA, u.Used)
			}
		}
		if _, err := e.ipam.RequestAddress(ipam.AddressRequest{PoolID: poolA, Address: "10.61.0.250"}); err == nil {
			t.Error("the aux address was released")
		}
		log := e.log.String()
		for _, k := range []string{drift.EndpointUnknownToDocker, drift.AddressUnused, drift.LinksMissing, drift.RulesMissing,
			drift.OrphanLink, drift.OrphanRules, drift.NetworkUnknownToDocker, drift.PoolUnused} {
			if !strings.Contains(log, `msg="repaired: `+k+" ") {
				t.Errorf("no `repaired: %s` log line:\n%s", k, log)
			}
		}
		for _, obj := range []string{"network bbbbbbbbbbbb", "endpoint 222222222222", "address 10.61.0.100", "pool " + unusedPool} {
			if !strings.Contains(log, "removed if still missing at the next run") || !strings.Contains(log, "object=\""+obj+"\"") {
				t.Errorf("holding %s is not logged:\n%s", obj, log)
			}
		}
	})
}

func mustView(t *testing.T, sock string) drift.View {
	t.Helper()
	v, err := drift.Fetch(context.Background(), sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A network Docker has again at the next run (a dockerd that was still
// restoring) is kept, and the count starts over if it goes missing later.
func TestLoopKeepsANetworkDockerHasAgain(t *testing.T) {
	inNetns(t, func(e *env) {
		e.network(netA, "10.61.0.0/24", "10.61.0.1/24")
		e.network(netB, "10.63.0.0/24", "10.63.0.1/24")
		a := dockerHas()[0]
		b := dockerNet{ID: netB, Name: "b", Driver: "mynet"}
		fake := newFakeDocker(t, dockerSock(t), a)
		const every = time.Hour
		l := e.loop(fake.sock, every)
		e.later(0)
		l.Once(context.Background()) // B missing: held
		fake.set(a, b)
		e.later(every)
		l.Once(context.Background()) // B back
		fake.set(a)
		e.later(every)
		l.Once(context.Background()) // B missing again: held anew
		if got := e.repaired(); got[drift.NetworkUnknownToDocker] != 0 || !linkExists(brB) {
			t.Fatalf("network B removed although Docker had it at the run before: %v", got)
		}
		e.later(every)
		l.Once(context.Background())
		if got := e.repaired(); got[drift.NetworkUnknownToDocker] != 1 || linkExists(brB) {
			t.Fatalf("network B missing for a whole interval is still there: %v", got)
		}
	})
}

// A Docker API that hangs or is absent (dockerd restarting, or not started
// yet at boot) neither blocks protocol calls nor makes the loop act; once
// Docker answers, the loop goes on.
func TestLoopNeverBlocksCallsAndWaitsForDocker(t *testing.T) {
	inNetns(t, func(e *env) {
		poolA, _ := e.plantDrift()
		sock := dockerSock(t)
		l := e.loop(sock, time.Hour)

		// Absent: no socket yet, as when mynet starts before dockerd.
		if o := l.Once(context.Background()); o != DockerUnreachable {
			t.Fatalf("no Docker: outcome %s", o)
		}
		if len(e.repaired()) != 0 {
			t.Fatalf("repaired without Docker's view: %v", e.repaired())
		}

		// Hung: the loop waits in its Docker call while calls go on.
		ns, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		fake := newFakeDocker(t, sock, dockerHas()...)
		release := fake.hangs()
		outcome := make(chan string, 1)
		go func() { outcome <- l.Once(context.Background()) }()
		<-fake.asked
		calls := make(chan error, 1)
		go func() {
			// The driver's calls lock the thread's namespace: run them in ours.
			calls <- inNetnsOf(ns, func() error {
				if _, err := e.ipam.RequestAddress(ipam.AddressRequest{PoolID: poolA}); err != nil {
					return err
				}
				const ep3 = "333333333333eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
				if _, err := e.net.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netC, EndpointID: ep3,
					Interface: &api.EndpointInterface{Address: "10.62.0.9/24"}, Options: map[string]any{}}); err != nil {
					return err
				}
				return e.net.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: netC, EndpointID: ep3})
			})
		}()
		if err := testutil.Receive(t, calls, 30*time.Second, "protocol calls blocked while the reconcile waits for a hung Docker"); err != nil {
			t.Errorf("protocol calls while Docker hangs: %v", err)
		}
		if o := <-outcome; o != DockerUnreachable {
			t.Errorf("hung Docker: outcome %s, want %s (the call times out)", o, DockerUnreachable)
		}
		if len(e.repaired()) != 0 {
			t.Fatalf("repaired without Docker's view: %v", e.repaired())
		}
		release()

		// Docker answers now: the loop repairs.
		if o := l.Once(context.Background()); o != OK || e.repaired()[drift.LinksMissing] != 1 {
			t.Fatalf("Docker back: outcome %s, repairs %v\n%s", o, e.repaired(), e.log)
		}
	})
}

// inNetnsOf runs fn on a fresh thread in namespace ns.
func inNetnsOf(ns netns.NsHandle, fn func() error) error {
	out := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			out <- err
			return
		}
		out <- fn()
	}()
	return <-out
}

// A view sharing no network with the store (another engine, one still
// empty) is refused by doctor --fix and by the loop: nothing is removed.
// --force overrides it for doctor.
func TestNoSharedNetworkRefusesRepairs(t *testing.T) {
	inNetns(t, func(e *env) {
		e.pool("10.61.0.0/24")
		e.network(netB, "10.63.0.0/24", "10.63.0.1/24")
		other := dockerNet{ID: "ffffffffffff" + strings.Repeat("0", 52), Name: "bridge", Driver: "bridge"}
		other.IPAM.Config = []dockerPool{{Subnet: "172.17.0.0/16"}}
		fake := newFakeDocker(t, dockerSock(t), other)
		l := e.loop(fake.sock, time.Millisecond)
		for i := 0; i < 3; i++ {
			if o := l.Once(context.Background()); o != NoSharedNetwork {
				t.Fatalf("run %d: outcome %s, want %s", i, o, NoSharedNetwork)
			}
		}
		fake.set() // Docker with no network at all
		if o := l.Once(context.Background()); o != NoSharedNetwork {
			t.Fatalf("empty view: outcome %s", o)
		}
		v := mustView(t, fake.sock)
		_, err := e.rep.Do(Run{View: v, HasView: true, Fix: drift.FixAll, By: "doctor"})
		if !errors.Is(err, ErrNoSharedNetwork) || !strings.Contains(err.Error(), "1 network(s) and 1 pool(s)") {
			t.Fatalf("doctor --fix against a disjoint view: %v", err)
		}
		if len(e.repaired()) != 0 || !linkExists(brB) || len(e.ipam.Usage()) != 1 {
			t.Fatalf("something was removed: %v", e.repaired())
		}
		// Without --fix it only reports.
		if ds, err := e.rep.Do(Run{View: v, HasView: true, By: "doctor"}); err != nil || len(ds) != 2 {
			t.Errorf("report against a disjoint view: %+v %v", ds, err)
		}
		ds, err := e.rep.Do(Run{View: v, HasView: true, Fix: drift.FixAll, Force: true, By: "doctor"})
		if err != nil || fixedKinds(ds)[drift.NetworkUnknownToDocker] != 1 || fixedKinds(ds)[drift.PoolUnused] != 1 {
			t.Errorf("--force: %+v %v", ds, err)
		}
	})
}

// The loop never runs alongside a doctor run: it skips its turn.
func TestLoopSkipsWhileDoctorRuns(t *testing.T) {
	inNetns(t, func(e *env) {
		e.network(netA, "10.61.0.0/24", "10.61.0.1/24")
		fake := newFakeDocker(t, dockerSock(t), dockerHas()...)
		l := e.loop(fake.sock, time.Hour)
		if err := exec.Command("ip", "link", "del", brA).Run(); err != nil {
			t.Fatal(err)
		}
		e.rep.mu.Lock() // as a doctor --fix in progress holds it
		o := l.Once(context.Background())
		e.rep.mu.Unlock()
		if o != Busy || len(e.repaired()) != 0 {
			t.Fatalf("during a doctor run: outcome %s, repairs %v", o, e.repaired())
		}
		if o := l.Once(context.Background()); o != OK || e.repaired()[drift.LinksMissing] != 1 {
			t.Fatalf("after it: outcome %s, repairs %v", o, e.repaired())
		}
	})
}

// Shutdown: a loop waiting for its next turn, or inside a hung Docker call,
// ends with its context.
func TestLoopEndsWithItsContext(t *testing.T) {
	inNetns(t, func(e *env) {
		fake := newFakeDocker(t, dockerSock(t), dockerHas()...)
		fake.hangs()
		l := e.loop(fake.sock, 10*time.Millisecond)
		l.View = func(ctx context.Context) (drift.View, error) { return drift.Fetch(ctx, fake.sock, time.Hour) }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Run(ctx)
		}()
		<-fake.asked
		cancel()
		testutil.Receive(t, done, 30*time.Second, "the loop did not end with its context while Docker hangs")
		if len(e.repaired()) != 0 {
			t.Errorf("repairs: %v", e.repaired())
		}
	})
}
