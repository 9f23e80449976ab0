// Package cluster keeps mynet's cluster-wide state in etcd: the hosts that
// joined, the cluster networks (subnet, VNI, backend, members), every
// address handed out in them and the endpoints the data plane needs.
//
// Rules it keeps: a lease only says whether a host is
// alive, it never owns an address or a network; every allocation is a
// transaction that compares on a key's revision and writes the requester's
// identity into the value, so a retried call that timed out can tell that
// it won; a released address is kept as a tombstone and not handed out
// again before a cool-down.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// Defaults for Config's zero values.
const (
	DefaultPrefix   = "/mynet/v1/"
	DefaultTimeout  = 5 * time.Second
	DefaultLeaseTTL = 15 * time.Second
	DefaultCooldown = 60 * time.Second
)

// connectWait bounds a call made while there is no connection to etcd
// (refused, reset, not made yet): the client would only wait out the whole
// Timeout for a server that is not there. A frozen etcd keeps its
// connection up, so a call to it still waits the whole Timeout.
const connectWait = 2 * time.Second

// Config wires a Client.
type Config struct {
	Endpoints []string    // etcd client URLs, http://host:port or https://host:port
	TLS       *tls.Config // nil: plain TCP
	HostID    string      // this host's stable id
	Advertise netip.Addr  // this host's underlay address: where other hosts send its VXLAN traffic
	Prefix    string      // key prefix; DefaultPrefix if empty
	Timeout   time.Duration
	LeaseTTL  time.Duration // how long a host counts as alive without a keepalive
	Cooldown  time.Duration // how long a released address stays unused
	Log       *slog.Logger
	// Observe, when set, is told of each etcd round trip (for metrics).
	Observe func(op string, took time.Duration, err error)
}

// Client talks to etcd for one host.
type Client struct {
	cli      *clientv3.Client
	cfg      Config
	keys     keys
	log      *slog.Logger
	where    string // the endpoints, for error messages
	mu       sync.Mutex
	leaseID  clientv3.LeaseID
	stopOnce sync.Once
	stop     chan struct{} // closed by Close: ends Run
	probe    tlsProbe      // why TLS with etcd fails, for error messages
}

// Open makes a client. It does not wait for etcd: a call made while etcd is
// unreachable fails after Config.Timeout with an error naming the endpoints.
func Open(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoint given")
	}
	if cfg.HostID == "" || strings.ContainsAny(cfg.HostID, "/ ") {
		return nil, fmt.Errorf("host id %q: want a plain non-empty name", cfg.HostID)
	}
	if !cfg.Advertise.IsValid() {
		return nil, errors.New("no advertise address: give the address other hosts reach this one at")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  cfg.TLS,
		DialTimeout:          cfg.Timeout,
		DialKeepAliveTime:    cfg.Timeout,
		DialKeepAliveTimeout: cfg.Timeout,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Client{
		cli: cli, cfg: cfg, keys: keys(cfg.Prefix), log: cfg.Log,
		where: strings.Join(cfg.Endpoints, ","),
		stop:  make(chan struct{}),
	}, nil
}

// HostID is this host's id.
func (c *Client) HostID() string { return c.cfg.HostID }

// Advertise is this host's underlay address.
func (c *Client) Advertise() netip.Addr { return c.cfg.Advertise }

// Cooldown is how long a released address stays unused.
func (c *Client) Cooldown() time.Duration { return c.cfg.Cooldown }

// Where names the etcd endpoints, for messages.
func (c *Client) Where() string { return c.where }

// Close stops the liveness loop, withdraws this host's liveness key (its
// records stay) and closes the connection.
func (c *Client) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	c.mu.Lock()
	lease := c.leaseID
	c.mu.Unlock()
	if lease != 0 {
		// The usual call timeout: on a busy etcd a shorter one left the host
		// counted alive until its lease ran out.
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		c.cli.Revoke(ctx, lease)
		cancel()
	}
	return c.cli.Close()
}

// ctx bounds one public call, all its round trips together, so a call fails
// within Timeout when etcd does not answer, and within connectWait when
// there is no connection to it.
func (c *Client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	budget := c.cfg.Timeout
	if !c.connected() {
		budget = min(budget, connectWait)
	}
	return context.WithTimeout(parent, budget)
}

// connected says whether the client holds a connection to an etcd endpoint
// (or has not tried yet): not while every endpoint refuses or is being
// redialled.
func (c *Client) connected() bool {
	conn := c.cli.ActiveConnection()
	if conn == nil {
		return true
	}
	switch conn.GetState() {
	case connectivity.TransientFailure, connectivity.Connecting:
		return false
	}
	return true
}

// Reconnected returns a channel that receives each time the client has a
// connection to etcd again after losing one, so that work which failed while
// etcd was away runs at once rather than at its next interval. Each call
// watches on its own until ctx ends.
func (c *Client) Reconnected(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	conn := c.cli.ActiveConnection()
	if conn == nil {
		return out
	}
	go func() {
		wasReady, lost := false, false
		for {
			s := conn.GetState()
			switch s {
			case connectivity.Ready:
				if lost {
					select {
					case out <- struct{}{}:
					default: // one pending wake-up is enough
					}
				}
				wasReady, lost = true, false
			case connectivity.Shutdown:
				return
			default: // idle, connecting, or failing
				lost = wasReady
			}
			if !conn.WaitForStateChange(ctx, s) {
				return // ctx ended
			}
		}
	}()
	return out
}

// wrap names etcd and the endpoints in an error from the client, so the user
// knows which service did not answer.
func (c *Client) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: etcd at %s: %w", what, c.where, err)
	}
	if tlsErr := c.probe.problem(c.cfg.Endpoints, c.cfg.TLS); tlsErr != nil {
		return fmt.Errorf("%s: etcd at %s: TLS with etcd failed: %v (check --cluster-ca, --cluster-cert and --cluster-key): %w", what, c.where, tlsErr, ErrUnavailable)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		if !c.connected() {
			return fmt.Errorf("%s: etcd at %s is unreachable (no connection to it): %w", what, c.where, ErrUnavailable)
		}
		return fmt.Errorf("%s: etcd at %s did not answer within %s: %w", what, c.where, c.cfg.Timeout, ErrUnavailable)
	}
	return fmt.Errorf("%s: etcd at %s: %v: %w", what, c.where, err, ErrUnavailable)
}

// observe reports one round trip.
func (c *Client) observe(op string, start time.Time, err error) {
	if c.cfg.Observe != nil {
		c.cfg.Observe(op, time.Since(start), err)
	}
}

// txn runs one transaction, timed.
func (c *Client) txn(ctx context.Context, op string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	start := time.Now()
	resp, err := c.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	c.observe(op, start, err)
	return resp, err
}

// get reads one key or prefix, timed.
func (c *Client) get(ctx context.Context, op, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	start := time.Now()
	resp, err := c.cli.Get(ctx, key, opts...)
	c.observe(op, start, err)
	return resp, err
}

// nonce is a random token that identifies one request in the values it writes.
func (c *Client) nonce() string {
	var b [8]byte
	rand.Read(b[:])
	return c.cfg.HostID + ":" + hex.EncodeToString(b[:])
}

// maxAttempts bounds compare-and-swap loops: each retry means another host
// changed the same key in between, which cannot go on for long.
const maxAttempts = 32
