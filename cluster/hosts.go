package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Register writes this host's durable record and its liveness key under a
// fresh lease. Run keeps both up afterwards; Register alone is for a start
// that wants to know at once whether etcd answers.
func (c *Client) Register(ctx context.Context) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	now := time.Now().UTC()
	h := Host{ID: c.cfg.HostID, Advertise: c.cfg.Advertise, Joined: now, Seen: now}
	resp, err := c.get(ctx, "get_host", c.keys.host(h.ID))
	if err != nil {
		return c.wrap("register host "+h.ID, err)
	}
	if len(resp.Kvs) == 1 {
		if old, err := decode[Host](resp.Kvs[0].Value); err == nil {
			h.Joined = old.Joined
		}
	}
	start := time.Now()
	lease, err := c.cli.Grant(ctx, int64(c.cfg.LeaseTTL/time.Second))
	c.observe("grant", start, err)
	if err != nil {
		return c.wrap("register host "+h.ID, err)
	}
	// Known before the liveness key exists, so a Close that sees the host
	// alive revokes it (and a Close in between makes the put below fail).
	c.mu.Lock()
	c.leaseID = lease.ID
	c.mu.Unlock()
	_, err = c.txn(ctx, "register", nil, []clientv3.Op{
		clientv3.OpPut(c.keys.host(h.ID), encode(h)),
		clientv3.OpPut(c.keys.alive(h.ID), h.Advertise.String(), clientv3.WithLease(lease.ID)),
	}, nil)
	if err != nil {
		c.mu.Lock()
		c.leaseID = 0
		c.mu.Unlock()
		return c.wrap("register host "+h.ID, err)
	}
	return nil
}

// Run keeps this host alive in etcd until ctx ends or Close: keepalives on the
// lease, and a new registration whenever the lease is lost (etcd was away
// longer than the TTL). Only liveness depends on it; no record of ours is
// bound to the lease.
func (c *Client) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		c.mu.Lock()
		lease := c.leaseID
		c.mu.Unlock()
		if lease == 0 {
			if err := c.Register(ctx); err != nil {
				c.log.Warn("cluster: cannot register this host; retrying", "err", err, "in", backoff)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			c.log.Info("cluster: host registered", "host", c.cfg.HostID, "advertise", c.cfg.Advertise)
			c.mu.Lock()
			lease = c.leaseID
			c.mu.Unlock()
		}
		backoff = 200 * time.Millisecond
		ch, err := c.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch { // drained until the lease is gone or etcd stops answering
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The channel closes when the lease expired or keepalives kept failing:
		// register again (a new lease), once etcd answers.
		c.log.Warn("cluster: liveness lease lost; registering again", "host", c.cfg.HostID)
		c.mu.Lock()
		c.leaseID = 0
		c.mu.Unlock()
		sleep(ctx, backoff)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// HostStatus is one host as operators see it.
type HostStatus struct {
	Host
	Alive     bool
	Networks  []string // cluster networks it is a member of
	Endpoints int      // endpoint records it published
	Addresses int      // addresses it holds (not counting tombstones)
}

// Hosts lists every host that joined, alive or not, sorted by id.
func (c *Client) Hosts(ctx context.Context) ([]HostStatus, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.txn(ctx, "list_hosts", nil, []clientv3.Op{
		clientv3.OpGet(c.keys.hosts(), clientv3.WithPrefix()),
		clientv3.OpGet(c.keys.alives(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(c.keys.networks(), clientv3.WithPrefix()),
		clientv3.OpGet(c.keys.allEndpoints(), clientv3.WithPrefix()),
		clientv3.OpGet(c.keys.allAddrs(), clientv3.WithPrefix()),
	}, nil)
	if err != nil {
		return nil, c.wrap("list hosts", err)
	}
	r := resp.Responses
	byID := map[string]*HostStatus{}
	for _, kv := range r[0].GetResponseRange().Kvs {
		h, err := decode[Host](kv.Value)
		if err != nil {
			return nil, fmt.Errorf("host record %s: %w", kv.Key, err)
		}
		byID[h.ID] = &HostStatus{Host: h}
	}
	status := func(id string) *HostStatus {
		if byID[id] == nil { // a record left by a host whose own record is gone
			byID[id] = &HostStatus{Host: Host{ID: id}}
		}
		return byID[id]
	}
	for _, kv := range r[1].GetResponseRange().Kvs {
		status(strings.TrimPrefix(string(kv.Key), c.keys.alives())).Alive = true
	}
	for _, kv := range r[2].GetResponseRange().Kvs {
		n, err := decode[Network](kv.Value)
		if err != nil {
			return nil, fmt.Errorf("network record %s: %w", kv.Key, err)
		}
		for id := range n.Members {
			s := status(id)
			s.Networks = append(s.Networks, n.Name)
		}
	}
	for _, kv := range r[3].GetResponseRange().Kvs {
		if e, err := decode[Endpoint](kv.Value); err == nil {
			status(e.Host).Endpoints++
		}
	}
	for _, kv := range r[4].GetResponseRange().Kvs {
		if a, err := decode[Address](kv.Value); err == nil && a.Host != "" && a.Released.IsZero() {
			status(a.Host).Addresses++
		}
	}
	out := make([]HostStatus, 0, len(byID))
	for _, s := range byID {
		sort.Strings(s.Networks)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Forget removes a dead host from the cluster: its endpoint records, its
// addresses (as tombstones, so they cool down before reuse), its network
// memberships (a network it was the last member of goes) and its host record.
// Refused while the host is alive. hostOrAddr is its id or advertise address.
// Safe to run again after a partial failure.
func (c *Client) Forget(ctx context.Context, hostOrAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*c.cfg.Timeout) // many round trips
	defer cancel()
	hosts, err := c.Hosts(ctx)
	if err != nil {
		return err
	}
	var h *HostStatus
	for i := range hosts {
		if hosts[i].ID == hostOrAddr || (hosts[i].Advertise.IsValid() && hosts[i].Advertise.String() == hostOrAddr) {
			if h != nil {
				return fmt.Errorf("%w: %q names hosts %s and %s: give the host id", ErrInvalid, hostOrAddr, h.ID, hosts[i].ID)
			}
			h = &hosts[i]
		}
	}
	if h == nil {
		var ids []string
		for _, x := range hosts {
			ids = append(ids, x.ID+" ("+x.Advertise.String()+")")
		}
		return fmt.Errorf("%w: no host %q in the cluster; hosts: %s", ErrInvalid, hostOrAddr, strings.Join(ids, ", "))
	}
	if h.Alive {
		return fmt.Errorf("%w: host %s (%s) is alive: stop its mynet first; forget is for hosts that are gone", ErrAlive, h.ID, h.Advertise)
	}
	// Data plane first, then addresses, then memberships, then the host: a
	// partial run leaves nothing that points at records already gone.
	eps, err := c.get(ctx, "list_endpoints", c.keys.allEndpoints(), clientv3.WithPrefix())
	if err != nil {
		return c.wrap("forget host "+h.ID, err)
	}
	for _, kv := range eps.Kvs {
		if e, err := decode[Endpoint](kv.Value); err == nil && e.Host == h.ID {
			if err := c.deleteIfUnchanged(ctx, string(kv.Key), kv.ModRevision); err != nil {
				return c.wrap("forget host "+h.ID, err)
			}
		}
	}
	addrs, err := c.get(ctx, "list_addrs", c.keys.allAddrs(), clientv3.WithPrefix())
	if err != nil {
		return c.wrap("forget host "+h.ID, err)
	}
	for _, kv := range addrs.Kvs {
		name, ip, ok := c.splitAddrKey(string(kv.Key))
		if !ok {
			continue
		}
		if err := c.release(ctx, name, ip, h.ID); err != nil {
			return err
		}
	}
	for _, name := range h.Networks {
		if err := c.leave(ctx, name, h.ID); err != nil {
			return err
		}
	}
	if _, err := c.txn(ctx, "forget_host", []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(c.keys.alive(h.ID)), "=", 0)},
		[]clientv3.Op{clientv3.OpDelete(c.keys.host(h.ID))}, nil); err != nil {
		return c.wrap("forget host "+h.ID, err)
	}
	c.log.Info("cluster: host forgotten", "host", h.ID, "advertise", h.Advertise, "networks", h.Networks)
	return nil
}

func (c *Client) deleteIfUnchanged(ctx context.Context, key string, rev int64) error {
	_, err := c.txn(ctx, "delete", []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		[]clientv3.Op{clientv3.OpDelete(key)}, nil)
	return err
}

// splitAddrKey takes addrs/<name>/<ip> apart.
func (c *Client) splitAddrKey(key string) (string, netip.Addr, bool) {
	return splitNameAddr(key, c.keys.allAddrs())
}

// splitNameAddr takes <prefix><name>/<ip> apart; ok is false for a key
// of another shape.
func splitNameAddr(key, prefix string) (name string, ip netip.Addr, ok bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", netip.Addr{}, false
	}
	name, ipText, ok := strings.Cut(rest, "/")
	if !ok {
		return "", netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(ipText)
	return name, ip, err == nil
}
