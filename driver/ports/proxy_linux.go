//go:build linux

package ports

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The IPv6 side of a published port is answered by the socket that holds
// it, a userland proxy like Docker's: each TCP connection it accepts, and
// each UDP client it hears from, is forwarded to the binding's Target6.
// That is how ::1 is answered (the kernel never routes a packet from ::1 off
// lo, so no DNAT can serve it), and every IPv6 address when the container
// has no IPv6 address. Where an ip6tables DNAT rule translates a
// connection first, the socket never sees it. The container sees the host's
// address on its bridge as the source. SCTP is not proxied.

const (
	proxyBacklog     = 128
	proxyDialTimeout = 5 * time.Second
	udpFlowIdle      = 90 * time.Second // Docker's proxy: UDPConnTrackTimeout
	udpMaxFlows      = 1024
	udpRcvBuf        = 256 << 10
)

// netnsRef is the network namespace a hold was made in, when it is not the
// process's: the proxy's dials must leave from there.
type netnsRef struct{ f *os.File }

// processNetns is the network namespace the process started in, read
// before any goroutine could move a thread elsewhere.
var processNetns = netnsID("/proc/thread-self/ns/net")

type nsID struct{ dev, ino uint64 }

func netnsID(path string) nsID {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return nsID{}
	}
	return nsID{uint64(st.Dev), st.Ino}
}

// callerNetns returns the calling thread's network namespace if it differs
// from the process's, else nil. (Compared with the namespace at start, not
// /proc/self's: that is the main thread's, which a goroutine locked to it
// may have moved.)
func callerNetns() *netnsRef {
	if netnsID("/proc/thread-self/ns/net") == processNetns {
		return nil
	}
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil
	}
	return &netnsRef{f: f}
}

func (n *netnsRef) close() {
	if n != nil {
		n.f.Close()
	}
}

// dial connects to addr from namespace n (nil: the process's); ctx ends a
// dial still under way when the proxy stops.
func (n *netnsRef) dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	d := func() (net.Conn, error) {
		return (&net.Dialer{Timeout: proxyDialTimeout}).DialContext(ctx, network, addr.String())
	}
	if n == nil {
		return d()
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		c, err := d()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// startProxy forwards what socket fd (the IPv6 hold of a tcp or udp port)
// receives to target; the returned stop ends the proxy and its connections
// (fd itself stays open: the hold closes it).
func startProxy(proto string, fd int, target netip.AddrPort, ns *netnsRef) (stop func(), err error) {
	switch proto {
	case TCP:
		return proxyTCP(fd, target, ns)
	case UDP:
		return proxyUDP(fd, target, ns)
	}
	return func() {}, nil
}

// conns is a set of open connections, closed together at stop; ctx ends
// with them, so a dial under way does not hold the stop up.
type conns struct {
	mu     sync.Mutex
	open   map[io.Closer]bool
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func newConns() *conns {
	c := &conns{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

func (c *conns) add(x io.Closer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.open == nil {
		c.open = map[io.Closer]bool{}
	}
	c.open[x] = true
	Proxied.ActiveConns.Add(1)
	return true
}

func (c *conns) remove(x io.Closer) {
	c.mu.Lock()
	if c.open[x] {
		delete(c.open, x)
		Proxied.ActiveConns.Add(-1)
	}
	c.mu.Unlock()
	x.Close()
}

func (c *conns) closeAll() {
	c.cancel()
	c.mu.Lock()
	c.closed = true
	open := c.open
	c.open = nil
	for x := range open {
		x.Close()
		Proxied.ActiveConns.Add(-1)
	}
	c.mu.Unlock()
}

// fromDup hands wrap (net.FileListener, net.FilePacketConn) a duplicate of
// fd, so that the hold's fd and what wrap returns close independently.
func fromDup[T any](fd int, name string, wrap func(*os.File) (T, error)) (T, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		var zero T
		return zero, err
	}
	f := os.NewFile(uintptr(d), name)
	defer f.Close() // wrap keeps a duplicate of its own
	return wrap(f)
}

func proxyTCP(fd int, target netip.AddrPort, ns *netnsRef) (func(), error) {
	// The hold listens with a backlog of 1; a proxy accepts.
	if err := unix.Listen(fd, proxyBacklog); err != nil {
		return nil, err
	}
	ln, err := fromDup(fd, "tcp-proxy", net.FileListener)
	if err != nil {
		return nil, err
	}
	cs := newConns()
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // EMFILE and the like
				continue
			}
			if !cs.add(c) {
				c.Close()
				return
			}
			cs.wg.Add(1)
			go func() {
				defer cs.wg.Done()
				defer cs.remove(c)
				up, err := ns.dial(cs.ctx, "tcp", target)
				if err != nil {
					Proxied.TCPFailed.Add(1)
					return
				}
				if !cs.add(up) {
					up.Close()
					return
				}
				defer cs.remove(up)
				Proxied.TCPConns.Add(1)
				pipe(c, up)
			}()
		}
	}()
	return func() {
		ln.Close()
		cs.closeAll()
		cs.wg.Wait()
	}, nil
}

// pipe copies both ways until both directions are done, passing half-closes
// on.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

func proxyUDP(fd int, target netip.AddrPort, ns *netnsRef) (func(), error) {
	// The hold keeps a minimal receive buffer; a proxy reads.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpRcvBuf); err != nil {
		return nil, err
	}
	pc, err := fromDup(fd, "udp-proxy", net.FilePacketConn)
	if err != nil {
		return nil, err
	}
	cs := newConns()
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			key := from.String()
			mu.Lock()
			up := flows[key]
			full := len(flows) >= udpMaxFlows
			mu.Unlock()
			if up == nil {
				if full {
					Proxied.UDPDropped.Add(1)
					continue
				}
				if up, err = ns.dial(cs.ctx, "udp", target); err != nil {
					Proxied.UDPDropped.Add(1)
					continue
				}
				if !cs.add(up) {
					up.Close()
					return
				}
				Proxied.UDPFlows.Add(1)
				mu.Lock()
				flows[key] = up
				mu.Unlock()
				cs.wg.Add(1)
				go func(up net.Conn, from net.Addr) {
					defer cs.wg.Done()
					defer func() {
						mu.Lock()
						delete(flows, key)
						mu.Unlock()
						cs.remove(up)
					}()
					rb := make([]byte, 65535)
					for {
						up.SetReadDeadline(time.Now().Add(udpFlowIdle))
						n, err := up.Read(rb)
						if err != nil {
							var ne net.Error
							if errors.As(err, &ne) && ne.Timeout() {
								return
							}
							if errors.Is(err, net.ErrClosed) {
								return
							}
							continue // ECONNREFUSED from an ICMP error: keep the flow
						}
						if _, err := pc.WriteTo(rb[:n], from); err != nil && errors.Is(err, net.ErrClosed) {
							return
						}
					}
				}(up, from)
			}
			up.Write(buf[:n])
		}
	}()
	return func() {
		pc.Close()
		cs.closeAll()
		cs.wg.Wait()
	}, nil
}
