package state

import (
	"encoding/json"
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

// Tx is a transaction with typed accessors. Getters return copies, so
// results stay valid after the transaction ends.
type Tx struct {
	tx *bolt.Tx
}

func put(b *bolt.Bucket, key string, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), buf)
}

func get[T any](b *bolt.Bucket, key string) (T, bool, error) {
	var v T
	raw := b.Get([]byte(key))
	if raw == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("decode record %q: %w", key, err)
	}
	return v, true, nil
}

func all[T any](b *bolt.Bucket) ([]T, error) {
	var out []T
	err := b.ForEach(func(k, raw []byte) error {
		if raw == nil { // nested bucket
			return nil
		}
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode record %q: %w", k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// ---- pools and addresses ----

// PutPool creates or replaces a pool record.
func (t *Tx) PutPool(p Pool) error {
	if _, err := t.tx.Bucket(bucketAddrs).CreateBucketIfNotExists([]byte(p.ID)); err != nil {
		return err
	}
	return put(t.tx.Bucket(bucketPools), p.ID, p)
}

// DeletePool removes a pool, its addresses and its cursor. Missing is fine.
func (t *Tx) DeletePool(id string) error {
	if err := t.tx.Bucket(bucketAddrs).DeleteBucket([]byte(id)); err != nil && err != bolt.ErrBucketNotFound {
		return err
	}
	if err := t.tx.Bucket(bucketCursors).Delete([]byte(id)); err != nil {
		return err
	}
	return t.tx.Bucket(bucketPools).Delete([]byte(id))
}

// Pool returns one pool record.
func (t *Tx) Pool(id string) (Pool, bool, error) { return get[Pool](t.tx.Bucket(bucketPools), id) }

// Pools returns every pool record.
func (t *Tx) Pools() ([]Pool, error) { return all[Pool](t.tx.Bucket(bucketPools)) }

func (t *Tx) addrBucket(poolID string) (*bolt.Bucket, error) {
	b := t.tx.Bucket(bucketAddrs).Bucket([]byte(poolID))
	if b == nil {
		return nil, fmt.Errorf("pool %q has no record", poolID)
	}
	return b, nil
}

// PutAddress records an allocated address of a pool.
func (t *Tx) PutAddress(poolID string, a netip.Addr, rec Address) error {
	b, err := t.addrBucket(poolID)
	if err != nil {
		return err
	}
	buf, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put(a.AsSlice(), buf)
}

// DeleteAddress forgets an address. Missing is fine.
func (t *Tx) DeleteAddress(poolID string, a netip.Addr) error {
	b := t.tx.Bucket(bucketAddrs).Bucket([]byte(poolID))
	if b == nil {
		return nil
	}
	return b.Delete(a.AsSlice())
}

// Addresses calls fn for each allocated address of a pool, in address order.
func (t *Tx) Addresses(poolID string, fn func(netip.Addr, Address) error) error {
	b := t.tx.Bucket(bucketAddrs).Bucket([]byte(poolID))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, raw []byte) error {
		a, ok := netip.AddrFromSlice(k)
		if !ok {
			return fmt.Errorf("pool %q: bad address key %x", poolID, k)
		}
		var rec Address
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("pool %q address %s: %w", poolID, a, err)
		}
		return fn(a, rec)
	})
}

// PutCursor remembers where an allocator left off (pool id, or a name for
// the automatic pool ranges).
func (t *Tx) PutCursor(key string, a netip.Addr) error {
	return t.tx.Bucket(bucketCursors).Put([]byte(key), a.AsSlice())
}

// Cursor returns a stored cursor.
func (t *Tx) Cursor(key string) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(t.tx.Bucket(bucketCursors).Get([]byte(key)))
	return a, ok
}

// ---- networks and endpoints ----

// PutNetwork creates or replaces a network record.
func (t *Tx) PutNetwork(n Network) error { return put(t.tx.Bucket(bucketNetworks), n.ID, n) }

// DeleteNetwork removes a network record. Missing is fine.
func (t *Tx) DeleteNetwork(id string) error {
	return t.tx.Bucket(bucketNetworks).Delete([]byte(id))
}

// Network returns one network record.
func (t *Tx) Network(id string) (Network, bool, error) {
	return get[Network](t.tx.Bucket(bucketNetworks), id)
}

// Networks returns every network record.
func (t *Tx) Networks() ([]Network, error) { return all[Network](t.tx.Bucket(bucketNetworks)) }

// PutEndpoint creates or replaces an endpoint record.
func (t *Tx) PutEndpoint(e Endpoint) error { return put(t.tx.Bucket(bucketEndpoints), e.ID, e) }

// DeleteEndpoint removes an endpoint record. Missing is fine.
func (t *Tx) DeleteEndpoint(id string) error {
	return t.tx.Bucket(bucketEndpoints).Delete([]byte(id))
}

// Endpoint returns one endpoint record.
func (t *Tx) Endpoint(id string) (Endpoint, bool, error) {
	return get[Endpoint](t.tx.Bucket(bucketEndpoints), id)
}

// Endpoints returns every endpoint record.
func (t *Tx) Endpoints() ([]Endpoint, error) { return all[Endpoint](t.tx.Bucket(bucketEndpoints)) }
