package cluster

import (
	"context"
	"maps"
	"net/netip"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// View is a live copy of every endpoint record, kept by Follow. Readers wait
// on Changed and then read what they need: changes coalesce, and a reader
// always sees a whole state, never a half-applied one.
type View struct {
	mu      sync.Mutex
	byNet   map[string]map[netip.Addr]Endpoint
	rev     int64
	synced  bool
	relists int
	lag     time.Duration
	changed chan struct{}
}

// NewView makes an empty view.
func NewView() *View {
	return &View{byNet: map[string]map[netip.Addr]Endpoint{}, changed: make(chan struct{}, 1)}
}

// Changed is signalled after each change (at most one signal pending).
func (v *View) Changed() <-chan struct{} { return v.changed }

// Network is a copy of one network's endpoints.
func (v *View) Network(name string) map[netip.Addr]Endpoint {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.byNet[name])
}

// All is a copy of every endpoint of every network.
func (v *View) All() []Endpoint {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Endpoint
	for _, m := range v.byNet {
		for _, e := range m {
			out = append(out, e)
		}
	}
	return out
}

// Status says whether the view has been listed at least once, the revision
// it reflects, how many full lists it took, and the lag of the last event
// (from the record's creation to its arrival here).
func (v *View) Status() (synced bool, rev int64, relists int, lag time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.synced, v.rev, v.relists, v.lag
}

func (v *View) notify() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

// Resync is how often Follow lists everything again even when the watch
// seems healthy: a guard against an event lost anywhere between etcd and us.
const Resync = 5 * time.Minute

// Follow keeps v equal to etcd's endpoint records until ctx ends: a full list
// at revision R, then a watch from R+1. When the watch breaks, or starts from
// a compacted revision, or Resync passes, it lists everything again.
// While etcd is unreachable v keeps its last state: nothing is dropped for
// lack of an answer.
func (c *Client) Follow(ctx context.Context, v *View) {
	c.follow(ctx, v, 0)
}

// follow starts with a watch from rev when rev > 0 (tests use it to start
// from a compacted revision); otherwise with a full list.
func (c *Client) follow(ctx context.Context, v *View, rev int64) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if rev == 0 {
			r, err := c.relist(ctx, v)
			if err != nil {
				c.log.Warn("cluster: cannot list endpoints; the data plane keeps its last state", "err", err, "retry_in", backoff)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			rev, backoff = r, 100*time.Millisecond
		}
		rev = c.watch(ctx, v, rev)
	}
}

// relist replaces v's contents with a full list; it returns the revision.
func (c *Client) relist(ctx context.Context, v *View) (int64, error) {
	lctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.get(lctx, "list_endpoints", c.keys.allEndpoints(), clientv3.WithPrefix())
	if err != nil {
		return 0, c.wrap("list endpoints", err)
	}
	byNet := map[string]map[netip.Addr]Endpoint{}
	for _, kv := range resp.Kvs {
		e, err := decode[Endpoint](kv.Value)
		if err != nil {
			c.log.Warn("cluster: undecodable endpoint record ignored", "key", string(kv.Key), "err", err)
			continue
		}
		if byNet[e.Network] == nil {
			byNet[e.Network] = map[netip.Addr]Endpoint{}
		}
		byNet[e.Network][e.IP] = e
	}
	v.mu.Lock()
	v.byNet, v.rev, v.synced = byNet, resp.Header.Revision, true
	v.relists++
	v.mu.Unlock()
	v.notify()
	return resp.Header.Revision, nil
}

// watch applies events after rev until the watch ends; it returns the
// revision to go on from, or 0 when a full list is needed.
func (c *Client) watch(ctx context.Context, v *View, rev int64) int64 {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := c.cli.Watch(wctx, c.keys.allEndpoints(), clientv3.WithPrefix(), clientv3.WithRev(rev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	resync := time.NewTimer(Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-resync.C:
			return 0
		case resp, ok := <-ch:
			if !ok {
				return 0
			}
			if resp.CompactRevision != 0 {
				c.log.Warn("cluster: watch started from a compacted revision; listing everything again", "from", rev+1, "compacted", resp.CompactRevision)
				return 0
			}
			if err := resp.Err(); err != nil {
				c.log.Warn("cluster: endpoint watch ended; listing everything again", "err", err)
				return 0
			}
			if len(resp.Events) == 0 { // progress notification
				v.mu.Lock()
				v.rev = max(v.rev, resp.Header.Revision)
				v.mu.Unlock()
				continue
			}
			v.mu.Lock()
			for _, ev := range resp.Events {
				name, ip, ok := c.splitEndpointKey(string(ev.Kv.Key))
				if !ok {
					continue
				}
				if ev.Type == clientv3.EventTypeDelete {
					delete(v.byNet[name], ip)
					continue
				}
				e, err := decode[Endpoint](ev.Kv.Value)
				if err != nil {
					c.log.Warn("cluster: undecodable endpoint record ignored", "key", string(ev.Kv.Key), "err", err)
					continue
				}
				if v.byNet[name] == nil {
					v.byNet[name] = map[netip.Addr]Endpoint{}
				}
				v.byNet[name][ip] = e
				v.lag = time.Since(e.Created)
			}
			v.rev = resp.Header.Revision
			lag := v.lag
			v.mu.Unlock()
			v.notify()
			if c.cfg.Observe != nil {
				c.cfg.Observe("watch_lag", lag, nil) // from the record's creation to here
			}
			rev = resp.Header.Revision
		}
	}
}
