package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Publish records where an endpoint of this host lives (IP, MAC, this host's
// VTEP), so other hosts program their data plane for it. The address must
// be held by this host; the record carries the address's generation. A
// record already there for the same address is replaced.
func (c *Client) Publish(ctx context.Context, e Endpoint) (Endpoint, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	what := fmt.Sprintf("publish endpoint %s of cluster network %s", e.IP, e.Network)
	e.Host, e.VTEP = c.cfg.HostID, c.cfg.Advertise
	if e.Created.IsZero() {
		e.Created = time.Now().UTC()
	}
	addrKey := c.keys.addr(e.Network, e.IP)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		held, rev, found, err := getRecord[Address](ctx, c, "get_addr", addrKey, what, "address")
		if err != nil {
			return Endpoint{}, err
		}
		if !found {
			return Endpoint{}, fmt.Errorf("%s: %w: the address is not allocated in the cluster", what, ErrInvalid)
		}
		if held.Host != c.cfg.HostID || !held.Released.IsZero() {
			return Endpoint{}, &TakenError{Network: e.Network, Addr: e.IP, Held: held}
		}
		e.Gen = held.Gen
		tr, err := c.txn(ctx, "publish", []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(addrKey), "=", rev)},
			[]clientv3.Op{clientv3.OpPut(c.keys.endpoint(e.Network, e.IP), encode(e))}, nil)
		if err != nil {
			return Endpoint{}, c.wrap(what, err)
		}
		if tr.Succeeded {
			return e, nil
		}
	}
	return Endpoint{}, fmt.Errorf("%s: %w", what, ErrContended)
}

// Withdraw removes this host's endpoint record for ip. A record of another
// host, or none, is left alone (success).
func (c *Client) Withdraw(ctx context.Context, network string, ip netip.Addr) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	what := fmt.Sprintf("withdraw endpoint %s of cluster network %s", ip, network)
	key := c.keys.endpoint(network, ip)
	return updateRecord(ctx, c, "get_endpoint", "withdraw", key, what, "endpoint", func(e Endpoint) (clientv3.Op, bool) {
		return clientv3.OpDelete(key), e.Host == c.cfg.HostID
	})
}

// Endpoints lists the endpoint records of one cluster network, or of every
// network when name is empty.
func (c *Client) Endpoints(ctx context.Context, name string) ([]Endpoint, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	prefix := c.keys.allEndpoints()
	if name != "" {
		prefix = c.keys.endpoints(name)
	}
	return list[Endpoint](ctx, c, "list_endpoints", prefix, "list endpoints", "endpoint record")
}

// splitEndpointKey takes endpoints/<name>/<ip> apart.
func (c *Client) splitEndpointKey(key string) (string, netip.Addr, bool) {
	return splitNameAddr(key, c.keys.allEndpoints())
}
