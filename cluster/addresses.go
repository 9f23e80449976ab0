package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Claim takes address a of cluster network name: for this host (KindEndpoint)
// or for every host (KindGateway, which any member may claim and all share).
// One transaction creates the record if absent, compared on its create
// revision; a tombstone past its cool-down is taken over compared on its mod
// revision. The record carries this call's identity, so when the answer is
// lost (etcd timed out after committing) a read-back tells whether it won.
// A TakenError says who holds the address, or until when it cools down.
func (c *Client) Claim(ctx context.Context, name string, a netip.Addr, kind string) (Address, error) {
	return c.claim(ctx, name, a, kind, false)
}

// Reassert makes sure an address this host holds (by its own records) is held
// in etcd too: absent, it is claimed again; held by this host, nothing
// changes. Used when a host rebuilds from its own records.
func (c *Client) Reassert(ctx context.Context, name string, a netip.Addr, kind string) (Address, error) {
	return c.claim(ctx, name, a, kind, true)
}

func (c *Client) claim(ctx context.Context, name string, a netip.Addr, kind string, ours bool) (Address, error) {
	if kind != KindGateway && kind != KindEndpoint {
		return Address{}, fmt.Errorf("%w: address kind %q", ErrInvalid, kind)
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	what := fmt.Sprintf("claim address %s of cluster network %s", a, name)
	key, netKey := c.keys.addr(name, a), c.keys.network(name)
	rec := Address{Host: c.cfg.HostID, Request: c.nonce(), Kind: kind, Gen: 1, Claimed: time.Now().UTC()}
	if kind == KindGateway {
		rec.Host = ""
	}
	netExists := clientv3.Compare(clientv3.CreateRevision(netKey), ">", 0)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		resp, err := c.txn(ctx, "claim", []clientv3.Cmp{netExists, clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(key, encode(rec))},
			[]clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(netKey, clientv3.WithKeysOnly())})
		if err != nil {
			return c.readBack(what, key, rec, err)
		}
		if resp.Succeeded {
			return rec, nil
		}
		if len(resp.Responses[1].GetResponseRange().Kvs) == 0 {
			return Address{}, fmt.Errorf("%s: %w: %s", what, ErrNoNetwork, name)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // released and removed in between
		}
		held, err := decode[Address](kvs[0].Value)
		if err != nil {
			return Address{}, fmt.Errorf("%s: address record: %w", what, err)
		}
		now := time.Now().UTC()
		switch {
		case held.Request == rec.Request:
			return held, nil
		case held.Released.IsZero() && held.Kind == KindGateway && kind == KindGateway:
			return held, nil // one gateway for every host
		case held.Released.IsZero() && ours && held.Host == c.cfg.HostID && held.Kind == kind:
			return held, nil
		case held.Released.IsZero():
			return Address{}, &TakenError{Network: name, Addr: a, Held: held}
		case !held.Free(now, c.cfg.Cooldown) && !(ours && held.Host == c.cfg.HostID):
			return Address{}, &TakenError{Network: name, Addr: a, Held: held, Until: held.Released.Add(c.cfg.Cooldown)}
		}
		next := rec
		next.Gen = held.Gen + 1
		resp, err = c.txn(ctx, "reclaim", []clientv3.Cmp{netExists, clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)},
			[]clientv3.Op{clientv3.OpPut(key, encode(next))}, nil)
		if err != nil {
			return c.readBack(what, key, next, err)
		}
		if resp.Succeeded {
			return next, nil
		}
	}
	return Address{}, fmt.Errorf("%s: %w", what, ErrContended)
}

// readBack settles a transaction whose answer was lost: it may have
// committed. The record names the request, so reading it tells. Without a
// connection there is nothing to read: a claim that did commit is this
// host's in etcd only, and the cluster reconcile gives it back.
func (c *Client) readBack(what, key string, rec Address, txnErr error) (Address, error) {
	if !c.connected() {
		return Address{}, c.wrap(what, txnErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout/2)
	defer cancel()
	resp, err := c.get(ctx, "claim_readback", key)
	if err == nil && len(resp.Kvs) == 1 {
		held, err := decode[Address](resp.Kvs[0].Value)
		switch {
		case err != nil:
		case held.Request == rec.Request:
			c.log.Info("cluster: claim committed although its answer was lost", "key", key, "err", txnErr)
			return held, nil
		case held.Released.IsZero():
			name, a, _ := c.splitAddrKey(key)
			return Address{}, &TakenError{Network: name, Addr: a, Held: held}
		}
	}
	return Address{}, c.wrap(what, txnErr)
}

// Release gives back an address this host holds. It stays as a tombstone
// until the cool-down has passed, so no other host hands it out while stale
// neighbour entries may still point at this one. Addresses held by another
// host, the shared gateway, tombstones and unknown addresses are left alone
// (success).
func (c *Client) Release(ctx context.Context, name string, a netip.Addr) error {
	return c.release(ctx, name, a, c.cfg.HostID)
}

func (c *Client) release(ctx context.Context, name string, a netip.Addr, owner string) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	what := fmt.Sprintf("release address %s of cluster network %s", a, name)
	key := c.keys.addr(name, a)
	// After an error, a retried release finds the tombstone and succeeds.
	return updateRecord(ctx, c, "get_addr", "release", key, what, "address", func(held Address) (clientv3.Op, bool) {
		if held.Host != owner || owner == "" || !held.Released.IsZero() {
			return clientv3.Op{}, false
		}
		held.Released = time.Now().UTC()
		return clientv3.OpPut(key, encode(held)), true
	})
}

// Addresses lists the records of one cluster network, tombstones included.
func (c *Client) Addresses(ctx context.Context, name string) (map[netip.Addr]Address, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.get(ctx, "list_addrs", c.keys.addrs(name), clientv3.WithPrefix())
	if err != nil {
		return nil, c.wrap("list addresses of cluster network "+name, err)
	}
	out := make(map[netip.Addr]Address, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		_, ip, ok := c.splitAddrKey(string(kv.Key))
		if !ok {
			continue
		}
		a, err := decode[Address](kv.Value)
		if err != nil {
			return nil, fmt.Errorf("address record %s: %w", kv.Key, err)
		}
		out[ip] = a
	}
	return out, nil
}
