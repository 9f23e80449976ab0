//go:build linux

package ports

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mynet/mynet/state"
	"golang.org/x/sys/unix"
)

// Tests bind only to 0.0.0.0, 127.0.0.1 and [::] and send no traffic.

var (
	ctr  = netip.MustParseAddr("10.213.0.2")
	lo4  = netip.MustParseAddr("127.0.0.1")
	any4 = netip.IPv4Unspecified()
	any6 = netip.IPv6Unspecified()
)

func inUseMsg(port uint16, proto, ip string) string {
	return fmt.Sprintf("host port %d/%s on %s is already in use (by another container or a host process): choose another host port or stop the other one", port, proto, ip)
}

func hasIPv6() bool {
	ln, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// freeBlock finds n consecutive ports that are free for tcp and udp on all
// addresses, below the ephemeral range so the kernel does not hand them out
// meanwhile.
func freeBlock(t *testing.T, n int) uint16 {
	t.Helper()
	for base := 20000 + (int(unix.Getpid())*37)%5000; base < 32000; base += n + 1 {
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, proto := range []string{TCP, UDP} {
				fds, err := openHolds(proto, netip.Addr{}, uint16(p))
				if err != nil {
					ok = false
					break
				}
				closeHolds(fds)
			}
		}
		if ok {
			return uint16(base)
		}
	}
	t.Fatalf("no block of %d free ports", n)
	return 0
}

func tcpMap(port uint16) Mapping {
	return Mapping{Proto: TCP, HostPort: port, ContainerPort: 80}
}

func releaseAll(t *testing.T, r *Reserver) {
	t.Cleanup(func() { r.Release(r.Held()) })
}

// canListen reports whether this process could take the port itself.
func canListen(t *testing.T, proto, addr string) bool {
	t.Helper()
	if proto == UDP {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// keep closes a socket the test opened when the test ends; an error opening
// it fails the test.
func keep(t *testing.T, c io.Closer, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

// hostTCP listens on addr as a host process would, until the test ends, and
// returns the port (the kernel's pick for port 0).
func hostTCP(t *testing.T, network, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen(network, addr)
	keep(t, ln, err)
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// hostUDP is hostTCP for a UDP socket.
func hostUDP(t *testing.T, network, addr string) uint16 {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	keep(t, c, err)
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func hostPort(ip string, p uint16) string { return net.JoinHostPort(ip, strconv.Itoa(int(p))) }

func TestReserveExplicitTwice(t *testing.T) {
	p := freeBlock(t, 1)
	r := NewReserver()
	releaseAll(t, r)

	bs, err := r.Reserve(ctr, []Mapping{tcpMap(p), {Proto: UDP, HostPort: p, ContainerPort: 53}})
	if err != nil {
		t.Fatal(err)
	}
	want := []state.PortBinding{
		{Proto: TCP, HostPort: p, ContainerIP: ctr, ContainerPort: 80},
		{Proto: UDP, HostPort: p, ContainerIP: ctr, ContainerPort: 53},
	}
	if fmt.Sprint(bs) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", bs, want)
	}

	// Same reservation again in this process: the map refuses it.
	_, err = r.Reserve(ctr, []Mapping{tcpMap(p)})
	if err == nil || err.Error() != inUseMsg(p, TCP, "0.0.0.0") {
		t.Fatalf("second reserve: got %v, want %q", err, inUseMsg(p, TCP, "0.0.0.0"))
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("error %v is not ErrPortInUse", err)
	}
	var pe *PortInUseError
	if !errors.As(err, &pe) || pe.HostPort != p || pe.Proto != TCP {
		t.Fatalf("not a PortInUseError for %d/tcp: %#v", p, pe)
	}
	// 127.0.0.1:P conflicts with the all-addresses hold.
	_, err = r.Reserve(ctr, []Mapping{{Proto: UDP, HostIP: lo4, HostPort: p, ContainerPort: 53}})
	if err == nil || err.Error() != inUseMsg(p, UDP, "127.0.0.1") {
		t.Fatalf("127.0.0.1 reserve: got %v", err)
	}

	// Another Reserver (another plugin process, or Docker's proxy) is refused by the kernel.
	r2 := NewReserver()
	releaseAll(t, r2)
	for _, proto := range []string{TCP, UDP} {
		_, err = r2.Reserve(ctr, []Mapping{{Proto: proto, HostPort: p, ContainerPort: 80}})
		if err == nil || err.Error() != inUseMsg(p, proto, "0.0.0.0") {
			t.Fatalf("%s from another reserver: got %v", proto, err)
		}
		_, err = r2.Reserve(ctr, []Mapping{{Proto: proto, HostIP: lo4, HostPort: p, ContainerPort: 80}})
		if !errors.Is(err, ErrPortInUse) {
			t.Fatalf("%s on 127.0.0.1 from another reserver: got %v", proto, err)
		}
	}

	// Host processes cannot take it either, on any address.
	for _, proto := range []string{TCP, UDP} {
		for _, a := range []string{"0.0.0.0", "127.0.0.1"} {
			if canListen(t, proto, hostPort(a, p)) {
				t.Errorf("a host process could take %s %s", proto, hostPort(a, p))
			}
		}
	}
	if hasIPv6() {
		if ln, err := net.Listen("tcp6", hostPort("::", p)); err == nil {
			ln.Close()
			t.Errorf("a host process could take tcp [::]:%d", p)
		}
		if c, err := net.ListenPacket("udp6", hostPort("::", p)); err == nil {
			c.Close()
			t.Errorf("a host process could take udp [::]:%d", p)
		}
	}
}

func TestReserveHostProcessConflict(t *testing.T) {
	r := NewReserver()
	releaseAll(t, r)

	p := hostTCP(t, "tcp4", "127.0.0.1:0")
	_, err := r.Reserve(ctr, []Mapping{{Proto: TCP, HostIP: lo4, HostPort: p, ContainerPort: 80}})
	if err == nil || err.Error() != inUseMsg(p, TCP, "127.0.0.1") {
		t.Fatalf("got %v, want %q", err, inUseMsg(p, TCP, "127.0.0.1"))
	}
	_, err = r.Reserve(ctr, []Mapping{tcpMap(p)})
	if err == nil || err.Error() != inUseMsg(p, TCP, "0.0.0.0") {
		t.Fatalf("all addresses: got %v", err)
	}

	up := hostUDP(t, "udp4", "0.0.0.0:0")
	_, err = r.Reserve(ctr, []Mapping{{Proto: UDP, HostIP: lo4, HostPort: up, ContainerPort: 53}})
	if err == nil || err.Error() != inUseMsg(up, UDP, "127.0.0.1") {
		t.Fatalf("udp: got %v", err)
	}
	if len(r.Held()) != 0 {
		t.Fatalf("held after failures: %v", r.Held())
	}
}

func TestReserveIPv6ListenerConflicts(t *testing.T) {
	if !hasIPv6() {
		t.Skip("no IPv6 on this host")
	}
	p := freeBlock(t, 1)
	hostTCP(t, "tcp6", hostPort("::", p)) // IPV6_V6ONLY
	r := NewReserver()
	releaseAll(t, r)
	_, err := r.Reserve(ctr, []Mapping{tcpMap(p)})
	if err == nil || err.Error() != inUseMsg(p, TCP, "[::]") {
		t.Fatalf("got %v, want %q", err, inUseMsg(p, TCP, "[::]"))
	}
	// The IPv4 side alone is free, and the failed attempt did not keep it.
	if _, err := r.Reserve(ctr, []Mapping{{Proto: TCP, HostIP: any4, HostPort: p, ContainerPort: 80}}); err != nil {
		t.Fatalf("0.0.0.0 only: %v", err)
	}
	// Explicit [::] in this process conflicts with nothing v4, but the kernel says no.
	if _, err := r.Reserve(ctr, []Mapping{{Proto: TCP, HostIP: any6, HostPort: p, ContainerPort: 80}}); err == nil ||
		err.Error() != inUseMsg(p, TCP, "[::]") {
		t.Fatalf("[::]: got %v", err)
	}
}

func TestReserveEphemeralDistinct(t *testing.T) {
	r := NewReserver()
	releaseAll(t, r)
	first, last := r.EphemeralRange()
	var ms []Mapping
	for i := 0; i < 30; i++ {
		ms = append(ms, Mapping{Proto: TCP, ContainerPort: 80}, Mapping{Proto: UDP, ContainerPort: 53})
	}
	bs, err := r.Reserve(ctr, ms)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, b := range bs {
		if b.HostPort < first || b.HostPort > last {
			t.Errorf("port %d outside %d-%d", b.HostPort, first, last)
		}
		k := fmt.Sprint(b.Proto, b.HostPort)
		if seen[k] {
			t.Errorf("port %d/%s handed out twice", b.HostPort, b.Proto)
		}
		seen[k] = true
		if canListen(t, b.Proto, hostPort("127.0.0.1", b.HostPort)) {
			t.Errorf("%v is not held", b)
		}
	}
	// Round-robin: the next pick continues after the last one (unless it wrapped).
	lastTCP := bs[len(bs)-2].HostPort
	more, err := r.Reserve(ctr, []Mapping{{Proto: TCP, ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	if more[0].HostPort <= lastTCP && lastTCP < last-100 {
		t.Errorf("round robin: got %d after %d", more[0].HostPort, lastTCP)
	}
	if len(r.Held()) != 61 {
		t.Errorf("held %d, want 61", len(r.Held()))
	}
}

func TestReserveEphemeralExhausted(t *testing.T) {
	p := freeBlock(t, 2)
	r := newReserver(p, p+1)
	releaseAll(t, r)
	hostTCP(t, "tcp", hostPort("127.0.0.1", p+1))
	bs, err := r.Reserve(ctr, []Mapping{{Proto: TCP, ContainerPort: 80}})
	if err != nil || bs[0].HostPort != p {
		t.Fatalf("got %v %v, want port %d", bs, err, p)
	}
	_, err = r.Reserve(ctr, []Mapping{{Proto: TCP, ContainerPort: 81}})
	want := fmt.Sprintf("no free host port for container port 81/tcp on 0.0.0.0 in the ephemeral range %d-%d: all are in use", p, p+1)
	if !errors.Is(err, ErrNoFreePort) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestReserveRangeFirstFree(t *testing.T) {
	p := freeBlock(t, 5)
	r := NewReserver()
	releaseAll(t, r)
	// p is taken by a host process, p+1 by another mapping of this reserver.
	hostTCP(t, "tcp", hostPort("0.0.0.0", p))
	if _, err := r.Reserve(ctr, []Mapping{tcpMap(p + 1)}); err != nil {
		t.Fatal(err)
	}
	rng := Mapping{Proto: TCP, HostPort: p, HostPortEnd: p + 4, ContainerPort: 80}
	bs, err := r.Reserve(ctr, []Mapping{rng, rng})
	if err != nil {
		t.Fatal(err)
	}
	if bs[0].HostPort != p+2 || bs[1].HostPort != p+3 {
		t.Fatalf("got %v, want ports %d and %d", bs, p+2, p+3)
	}
	if _, err := r.Reserve(ctr, []Mapping{rng}); err != nil || len(r.Held()) != 4 {
		t.Fatalf("last port of the range: %v, held %v", err, r.Held())
	}
	_, err = r.Reserve(ctr, []Mapping{rng})
	want := fmt.Sprintf("no free host port in %d-%d/tcp on 0.0.0.0 for container port 80: all are in use (by other containers or host processes): choose another range or stop one of them", p, p+4)
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoFreePort) {
		t.Fatalf("got %v\nwant %q", err, want)
	}
}

func TestReserveAllOrNothing(t *testing.T) {
	p := freeBlock(t, 3)
	hostTCP(t, "tcp", hostPort("127.0.0.1", p+2))
	r := NewReserver()
	releaseAll(t, r)
	_, err := r.Reserve(ctr, []Mapping{
		tcpMap(p),
		{Proto: UDP, HostPort: p + 1, ContainerPort: 53},
		{Proto: TCP, ContainerPort: 81}, // ephemeral
		{Proto: TCP, HostIP: lo4, HostPort: p + 2, ContainerPort: 82},
	})
	if err == nil || err.Error() != inUseMsg(p+2, TCP, "127.0.0.1") {
		t.Fatalf("got %v", err)
	}
	if h := r.Held(); len(h) != 0 {
		t.Fatalf("still held after rollback: %v", h)
	}
	// Everything the failed call took is really free again.
	for _, a := range []string{"0.0.0.0", "127.0.0.1"} {
		if !canListen(t, TCP, hostPort(a, p)) {
			t.Errorf("tcp %s:%d still taken", a, p)
		}
		if !canListen(t, UDP, hostPort(a, p+1)) {
			t.Errorf("udp %s:%d still taken", a, p+1)
		}
	}
	if hasIPv6() {
		ln6, err := net.Listen("tcp6", hostPort("::", p))
		if err != nil {
			t.Errorf("tcp [::]:%d still taken: %v", p, err)
		} else {
			ln6.Close()
		}
	}
	// Validation errors come before anything is taken.
	_, err = r.Reserve(ctr, []Mapping{tcpMap(p), {Proto: "icmp", ContainerPort: 1}})
	if err == nil || !strings.Contains(err.Error(), `protocol "icmp" cannot be published`) || len(r.Held()) != 0 {
		t.Fatalf("got %v, held %v", err, r.Held())
	}
	_, err = r.Reserve(ctr, []Mapping{{Proto: TCP, HostPort: p}})
	if err == nil || !strings.Contains(err.Error(), "container port 0") {
		t.Fatalf("container port 0: %v", err)
	}
}

func TestReleaseIdempotent(t *testing.T) {
	p := freeBlock(t, 1)
	r := NewReserver()
	bs, err := r.Reserve(ctr, []Mapping{tcpMap(p), {Proto: UDP, HostIP: lo4, HostPort: p, ContainerPort: 53}})
	if err != nil {
		t.Fatal(err)
	}
	// Releasing a look-alike for another container does nothing.
	other := bs[0]
	other.ContainerIP = netip.MustParseAddr("10.213.0.3")
	r.Release([]state.PortBinding{other})
	if len(r.Held()) != 2 {
		t.Fatalf("look-alike released a hold: %v", r.Held())
	}
	r.Release(bs)
	r.Release(bs)
	r.Release(nil)
	r.Release([]state.PortBinding{{Proto: "bogus"}})
	if h := r.Held(); len(h) != 0 {
		t.Fatalf("held after release: %v", h)
	}
	if !canListen(t, TCP, hostPort("0.0.0.0", p)) || !canListen(t, UDP, hostPort("127.0.0.1", p)) {
		t.Fatal("ports not free after release")
	}
	// And they can be reserved again.
	bs2, err := r.Reserve(ctr, []Mapping{tcpMap(p)})
	if err != nil {
		t.Fatal(err)
	}
	r.Release(bs2)
}

func TestRestore(t *testing.T) {
	p := freeBlock(t, 1)
	r := NewReserver()
	releaseAll(t, r)
	bs, err := r.Reserve(ctr, []Mapping{tcpMap(p), {Proto: UDP, HostIP: lo4, HostPort: p, ContainerPort: 53}})
	if err != nil {
		t.Fatal(err)
	}
	r.Release(bs)

	// A fresh reserver, as after a plugin restart.
	r2 := NewReserver()
	releaseAll(t, r2)
	for _, b := range bs {
		if err := r2.Restore(b); err != nil {
			t.Fatalf("restore %v: %v", b, err)
		}
		if err := r2.Restore(b); err != nil { // already held identically
			t.Fatalf("second restore %v: %v", b, err)
		}
	}
	if fmt.Sprint(r2.Held()) != fmt.Sprint(bs) {
		t.Fatalf("held %v, want %v", r2.Held(), bs)
	}
	if canListen(t, TCP, hostPort("127.0.0.1", p)) {
		t.Fatal("restored port not held")
	}
	// Restoring it elsewhere conflicts like Reserve.
	if err := r.Restore(bs[0]); err == nil || err.Error() != inUseMsg(p, TCP, "0.0.0.0") {
		t.Fatalf("conflicting restore: %v", err)
	}
	// A different binding on the same port in the same reserver conflicts too.
	b := bs[0]
	b.ContainerIP = netip.MustParseAddr("10.213.0.9")
	if err := r2.Restore(b); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("look-alike restore: %v", err)
	}
	if err := r2.Restore(state.PortBinding{Proto: TCP, ContainerIP: ctr, ContainerPort: 80}); err == nil {
		t.Fatal("restore of host port 0 accepted")
	}
}

func TestReserveConcurrent(t *testing.T) {
	r := NewReserver()
	releaseAll(t, r)
	const workers = 20
	var wg sync.WaitGroup
	results := make([][]state.PortBinding, workers)
	errs := make([]error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ip := netip.AddrFrom4([4]byte{10, 213, 0, byte(10 + i)})
			ms := []Mapping{{Proto: TCP, ContainerPort: 80}, {Proto: TCP, ContainerPort: 443}, {Proto: UDP, ContainerPort: 53}}
			for j := 0; j < 3; j++ {
				bs, err := r.Reserve(ip, ms)
				if err != nil {
					errs[i] = err
					return
				}
				results[i] = append(results[i], bs...)
				if j == 1 { // churn: give some back while others reserve
					r.Release(bs)
					results[i] = results[i][:len(results[i])-len(bs)]
				}
			}
		}(i)
	}
	wg.Wait()
	seen := map[string]state.PortBinding{}
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("worker %d: %v", i, errs[i])
		}
		for _, b := range results[i] {
			k := fmt.Sprint(b.Proto, b.HostPort)
			if prev, dup := seen[k]; dup {
				t.Fatalf("%v and %v share a host port", prev, b)
			}
			seen[k] = b
		}
	}
	if len(seen) != workers*2*3 || len(r.Held()) != len(seen) {
		t.Fatalf("%d distinct, %d held, want %d", len(seen), len(r.Held()), workers*2*3)
	}

	// Everyone wants the same explicit port: exactly one wins.
	p := freeBlock(t, 1)
	var mu sync.Mutex
	wins, losses := 0, 0
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Reserve(ctr, []Mapping{tcpMap(p)})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if errors.Is(err, ErrPortInUse) {
				losses++
			} else {
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || losses != workers-1 {
		t.Fatalf("wins %d losses %d", wins, losses)
	}
}

func TestSCTP(t *testing.T) {
	r := NewReserver()
	releaseAll(t, r)
	p := freeBlock(t, 1)
	bs, err := r.Reserve(ctr, []Mapping{{Proto: SCTP, HostPort: p, ContainerPort: 9}})
	if err != nil {
		if !errors.Is(err, ErrSCTPUnavailable) || err.Error() != "sctp is not available on this host: load the sctp kernel module (modprobe sctp)" {
			t.Fatalf("unexpected sctp error: %v", err)
		}
		// An ephemeral request stops at once instead of scanning the range.
		if _, err := r.Reserve(ctr, []Mapping{{Proto: SCTP, ContainerPort: 9}}); !errors.Is(err, ErrSCTPUnavailable) {
			t.Fatalf("ephemeral sctp: %v", err)
		}
		if os.Getenv("MYNET_REQUIRE_SCTP") == "1" { // make uml: the UML kernel loads sctp
			t.Fatal("no SCTP, where the run asked for it")
		}
		t.Skip("no SCTP in this kernel; checked the error (make uml runs this test where it has SCTP)")
	}
	if _, err := NewReserver().Reserve(ctr, []Mapping{{Proto: SCTP, HostPort: p, ContainerPort: 9}}); err == nil ||
		err.Error() != inUseMsg(p, SCTP, "0.0.0.0") {
		t.Fatalf("second sctp reserve: %v", err)
	}
	r.Release(bs)
}

// TestHoldingSockets checks the socket options: close-on-exec, v6-only for
// [::], listening TCP, UDP without SO_REUSEADDR.
func TestHoldingSockets(t *testing.T) {
	p := freeBlock(t, 1)
	r := NewReserver()
	releaseAll(t, r)
	if _, err := r.Reserve(ctr, []Mapping{tcpMap(p), {Proto: UDP, HostPort: p, ContainerPort: 53}}); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for pp, m := range r.held {
		for _, h := range m {
			want := 1
			if hasIPv6() {
				want = 2
			}
			if len(h.fds) != want {
				t.Errorf("%v: %d sockets, want %d", h.b, len(h.fds), want)
			}
			for i, fd := range h.fds {
				fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
				if err != nil || fl&unix.FD_CLOEXEC == 0 {
					t.Errorf("%v socket %d not close-on-exec (%v)", h.b, i, err)
				}
				if i == 1 {
					if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v != 1 {
						t.Errorf("%v [::] socket V6ONLY=%d (%v)", h.b, v, err)
					}
				}
				acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
				reuse, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR)
				switch pp.proto {
				case TCP:
					if acc != 1 || reuse != 1 {
						t.Errorf("tcp socket: listening=%d reuseaddr=%d", acc, reuse)
					}
				case UDP:
					if reuse != 0 {
						t.Errorf("udp socket has SO_REUSEADDR")
					}
				}
			}
		}
	}
}

func TestBindErrors(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	err := bindError(TCP, ip, 8080, "bind", unix.EADDRNOTAVAIL)
	if err.Error() != "host IP 192.0.2.1 is not an address of this host: cannot publish host port 8080/tcp on it (use an address of a host interface, or none for all addresses)" {
		t.Errorf("EADDRNOTAVAIL: %v", err)
	}
	if err := bindError(TCP, any6, 8080, "bind", unix.EADDRNOTAVAIL); err != errNoIPv6 {
		t.Errorf("[::] EADDRNOTAVAIL: %v", err)
	}
	err = bindError(UDP, netip.Addr{}, 80, "bind", unix.EACCES)
	if !strings.Contains(err.Error(), "cannot bind host port 80/udp on 0.0.0.0: permission denied") {
		t.Errorf("EACCES: %v", err)
	}
	err = bindError(TCP, lo4, 80, "listen", unix.ENOBUFS)
	if !errors.Is(err, unix.ENOBUFS) || !strings.Contains(err.Error(), "listen") {
		t.Errorf("other: %v", err)
	}
}

func TestParseEphemeralRange(t *testing.T) {
	for in, want := range map[string][2]uint16{
		"32768\t60999\n": {32768, 60999},
		"1024 1024":      {1024, 1024},
	} {
		f, l, ok := parseEphemeralRange(in)
		if !ok || f != want[0] || l != want[1] {
			t.Errorf("%q: %d %d %v", in, f, l, ok)
		}
	}
	for _, in := range []string{"", "1", "0 10", "10 5", "a b", "1 70000", "1 2 3"} {
		if _, _, ok := parseEphemeralRange(in); ok {
			t.Errorf("%q accepted", in)
		}
	}
	r := NewReserver()
	if f, l := r.EphemeralRange(); f == 0 || f > l {
		t.Errorf("range %d-%d", f, l)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A refused bind closes its socket on every error path: a port in use
// (TCP and UDP, one address and all), an address that is not the host's.
func TestRefusedHoldsLeakNoDescriptor(t *testing.T) {
	r := NewReserver()
	releaseAll(t, r)
	tp := hostTCP(t, "tcp4", "0.0.0.0:0")
	up := hostUDP(t, "udp4", "0.0.0.0:0")
	refused := []Mapping{
		{Proto: TCP, HostIP: lo4, HostPort: tp, ContainerPort: 80},
		{Proto: TCP, HostPort: tp, ContainerPort: 80},
		{Proto: UDP, HostIP: lo4, HostPort: up, ContainerPort: 53},
		{Proto: UDP, HostPort: up, ContainerPort: 53},
		{Proto: TCP, HostIP: netip.MustParseAddr("192.0.2.1"), HostPort: tp, ContainerPort: 80}, // TEST-NET: never the host's
	}
	before := openFDs(t)
	const rounds = 20
	for i := 0; i < rounds; i++ {
		for _, m := range refused {
			if _, err := r.Reserve(ctr, []Mapping{m}); err == nil {
				t.Fatalf("%v accepted", m)
			}
		}
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d refused binds left %d descriptors open (%d before, %d after)", rounds*len(refused), after-before, before, after)
	}
	if len(r.Held()) != 0 {
		t.Fatalf("held after refusals: %v", r.Held())
	}
}
