package driver

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/state"
	"github.com/mynet/mynet/timing"
)

// Per-call cost against the number of networks and endpoints that already
// exist (it must not grow with the count). The driver is called
// directly, against the real kernel in a fresh network namespace and a real
// bbolt file: a thousand containers through dockerd would take minutes.

// nsWorker runs closures on one thread inside a fresh network namespace, so
// that a set-up of hundreds of links is paid once per sub-benchmark, not once
// per b.N round. The namespace goes when stop ends the thread.
type nsWorker struct {
	work chan func()
	d    *Driver
	s    *state.Store
}

func newNSWorker(b *testing.B) *nsWorker {
	b.Helper()
	w := &nsWorker{work: make(chan func())}
	path := filepath.Join(b.TempDir(), "mynet.db")
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if _, err := netns.New(); err != nil {
			ready <- err
			return
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			netlink.LinkSetUp(lo)
		}
		s, err := state.Open(path, state.Options{})
		if err != nil {
			ready <- err
			return
		}
		fw, err := firewall.New(nil)
		if err == nil {
			w.d, err = New(Config{Store: s, Firewall: fw, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}
		w.s = s
		ready <- err
		for fn := range w.work {
			fn()
		}
		s.Close()
	}()
	if err := <-ready; err != nil {
		b.Fatal(err)
	}
	return w
}

// do runs fn in the namespace and returns its error.
func (w *nsWorker) do(fn func() error) error {
	errc := make(chan error)
	w.work <- func() { errc <- fn() }
	return <-errc
}

func (w *nsWorker) stop() { close(w.work) }

// callCost adds up the time of one kind of call and where it went.
type callCost struct {
	took  time.Duration
	parts timing.Split
}

func (c *callCost) add(call func() error) error {
	before, t0 := timing.Cumulative(), time.Now()
	err := call()
	after := timing.Cumulative()
	c.took += time.Since(t0)
	c.parts.Netlink += after.Netlink - before.Netlink
	c.parts.Iptables += after.Iptables - before.Iptables
	c.parts.Bbolt += after.Bbolt - before.Bbolt
	return err
}

// report gives the mean per call: NAME-ms/op, and NAME-iptables-ms/op,
// NAME-netlink-ms/op and NAME-bbolt-ms/op for where it went.
func (c *callCost) report(b *testing.B, name string) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / float64(b.N) }
	b.ReportMetric(ms(c.took), name+"-ms/op")
	b.ReportMetric(ms(c.parts.Iptables), name+"-iptables-ms/op")
	b.ReportMetric(ms(c.parts.Netlink), name+"-netlink-ms/op")
	b.ReportMetric(ms(c.parts.Bbolt), name+"-bbolt-ms/op")
}

// benchNetID is random-looking like Docker's ids (the firewall shards
// rules by the id's first character).
func benchNetID(i int) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint("net", i)))) }
func benchEpID(i int) string  { return fmt.Sprintf("%012x%052d", 0xe00000+i, 0) }

// benchCreateDelete runs one sub-benchmark LABEL=N for each N in counts, on
// a fresh worker that fill has given N objects: each round calls create then
// del, and each call's mean is reported besides the pair's ns/op.
func benchCreateDelete(b *testing.B, label string, counts []int, fill func(w *nsWorker, n int) error, create, del func(w *nsWorker) error) {
	for _, existing := range counts {
		w := newNSWorker(b)
		if err := w.do(func() error { return fill(w, existing) }); err != nil {
			w.stop()
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s=%d", label, existing), func(b *testing.B) {
			var createCost, delCost callCost
			err := w.do(func() error {
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := createCost.add(func() error { return create(w) }); err != nil {
						return err
					}
					if err := delCost.add(func() error { return del(w) }); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			createCost.report(b, "create")
			delCost.report(b, "delete")
		})
		w.stop()
	}
}

// BenchmarkNetworkCreateDelete: CreateNetwork then DeleteNetwork of a bridge
// network with 0 and with 200 other bridge networks in place.
func BenchmarkNetworkCreateDelete(b *testing.B) {
	id := benchNetID(9999)
	benchCreateDelete(b, "networks", []int{0, 200},
		func(w *nsWorker, n int) error {
			for i := 0; i < n; i++ {
				sub := fmt.Sprintf("10.%d.%d.0/24", 120+i/250, i%250)
				gw := fmt.Sprintf("10.%d.%d.1/24", 120+i/250, i%250)
				if err := w.d.CreateNetwork(netReq(benchNetID(i), sub, gw, nil)); err != nil {
					return err
				}
			}
			return nil
		},
		func(w *nsWorker) error {
			return w.d.CreateNetwork(netReq(id, "10.119.0.0/24", "10.119.0.1/24", nil))
		},
		func(w *nsWorker) error {
			return w.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: id})
		})
}

// BenchmarkEndpointCreateDelete: CreateEndpoint then DeleteEndpoint (a veth
// pair on a bridge) with 0 and with 1000 other endpoints on the same network.
func BenchmarkEndpointCreateDelete(b *testing.B) {
	const net = "ee0000000000" + "0000000000000000000000000000000000000000000000000000"
	createEp := func(w *nsWorker, i int) error {
		_, err := w.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: net, EndpointID: benchEpID(i),
			Interface: &api.EndpointInterface{Address: fmt.Sprintf("10.118.%d.%d/16", i/250, i%250+2)}, Options: map[string]any{}})
		return err
	}
	benchCreateDelete(b, "endpoints", []int{0, 1000},
		func(w *nsWorker, n int) error {
			if err := w.d.CreateNetwork(netReq(net, "10.118.0.0/16", "10.118.255.254/16", nil)); err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				if err := createEp(w, i); err != nil {
					return err
				}
			}
			return nil
		},
		func(w *nsWorker) error { return createEp(w, 9999) },
		func(w *nsWorker) error {
			return w.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: net, EndpointID: benchEpID(9999)})
		})
}
