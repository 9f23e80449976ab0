// Package state keeps every pool, address, network and endpoint of mynet in
// one bbolt file. It is the only package that imports bbolt.
package state

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mynet/mynet/timing"
)

// ErrLocked means another process holds the state file open.
var ErrLocked = errors.New("state file is in use by another mynet process")

// ErrNewerSchema means the file was written by a newer mynet.
var ErrNewerSchema = errors.New("state file has a newer schema than this mynet understands")

var (
	bucketMeta      = []byte("meta")
	bucketPools     = []byte("pools")
	bucketAddrs     = []byte("addresses") // one nested bucket per pool id
	bucketCursors   = []byte("cursors")
	bucketNetworks  = []byte("networks")
	bucketEndpoints = []byte("endpoints")
	keySchema       = []byte("schema")
	keyInstance     = []byte("instance")
)

// migrations[i] brings a file from schema i to schema i+1. Append only.
var migrations = []func(*bolt.Tx) error{
	// 0 -> 1: the first layout.
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPools, bucketAddrs, bucketCursors, bucketNetworks, bucketEndpoints} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
}

// SchemaVersion is the schema this build writes.
var SchemaVersion = uint32(len(migrations))

// Store is the open state file.
type Store struct {
	db   *bolt.DB
	path string

	ops      chan *writeOp
	stop     chan struct{}
	stopped  sync.WaitGroup
	closeMu  sync.RWMutex
	isClosed bool
}

// Options tune Open.
type Options struct {
	LockTimeout time.Duration // how long to wait for another process's lock
	ReadOnly    bool          // shared lock, no writes (for inspection commands)
}

// Open opens (creating if needed) the state file, migrates it and starts the
// group-commit writer.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s (stop the other mynet or give it another --state)", ErrLocked, path)
		}
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s := &Store{db: db, path: path, ops: make(chan *writeOp, 1024), stop: make(chan struct{})}
	if opts.ReadOnly {
		if err := s.checkSchema(); err != nil {
			db.Close()
			return nil, err
		}
		return s, nil
	}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	s.stopped.Add(1)
	go s.writer()
	return s, nil
}

// InstanceID is a random id made when the file was created: it tells this
// state's kernel objects from those of another mynet on the same host.
func (s *Store) InstanceID() string {
	var id string
	s.db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			id = string(meta.Get(keyInstance))
		}
		return nil
	})
	return id
}

// Path is the file this store was opened from.
func (s *Store) Path() string { return s.path }

func (s *Store) checkSchema() error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := schemaOf(tx)
		if v > SchemaVersion {
			return fmt.Errorf("%w: %s has schema %d, this build knows %d", ErrNewerSchema, s.path, v, SchemaVersion)
		}
		if v < SchemaVersion {
			return fmt.Errorf("state file %s has schema %d: start the mynet daemon once to migrate it to %d", s.path, v, SchemaVersion)
		}
		return nil
	})
}

func schemaOf(tx *bolt.Tx) uint32 {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0
	}
	v := meta.Get(keySchema)
	if len(v) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (s *Store) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		v := schemaOf(tx)
		if v > SchemaVersion {
			return fmt.Errorf("%w: %s has schema %d, this build knows %d", ErrNewerSchema, s.path, v, SchemaVersion)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate state schema %d to %d: %w", v, v+1, err)
			}
		}
		if meta.Get(keyInstance) == nil {
			id := make([]byte, 6)
			if _, err := rand.Read(id); err != nil {
				return err
			}
			if err := meta.Put(keyInstance, []byte(hex.EncodeToString(id))); err != nil {
				return err
			}
		}
		var buf [4]byte
		binary.BigEndian.PutUint32(buf[:], SchemaVersion)
		return meta.Put(keySchema, buf[:])
	})
}

// Close stops the writer after pending writes and closes the file.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.isClosed {
		s.closeMu.Unlock()
		return nil
	}
	s.isClosed = true
	s.closeMu.Unlock()
	if !s.db.IsReadOnly() {
		close(s.stop)
		s.stopped.Wait()
	}
	return s.db.Close()
}

// View runs fn in a read transaction. Values read must not be kept past fn:
// the typed getters already copy them.
func (s *Store) View(fn func(*Tx) error) error {
	defer timing.Since(timing.Bbolt, time.Now())
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}
