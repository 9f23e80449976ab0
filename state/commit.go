package state

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mynet/mynet/timing"
)

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("state store is closed")

// maxGroup bounds how many writes share one commit.
const maxGroup = 256

type writeOp struct {
	fn   func(*Tx) error
	done chan error
}

// Update runs fn in a write transaction and returns once it is committed and
// synced to disk. Writes that arrive while another commit is syncing are
// committed together in the next one (group commit), so concurrent callers
// share one fsync instead of paying one each, and a lone caller waits for no
// timer. fn may run more than once (when a write grouped with it fails), so
// it must only touch the transaction.
func (s *Store) Update(fn func(*Tx) error) error {
	defer timing.Since(timing.Bbolt, time.Now())
	op := &writeOp{fn: fn, done: make(chan error, 1)}
	// Holding the read lock while queueing means Close (which takes the write
	// lock before stopping the writer) cannot strand an op in the queue.
	s.closeMu.RLock()
	if s.isClosed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	s.ops <- op
	s.closeMu.RUnlock()
	return <-op.done
}

func (s *Store) writer() {
	defer s.stopped.Done()
	for {
		select {
		case <-s.stop:
			s.drain()
			return
		case op := <-s.ops:
			s.commit(s.gather(op))
		}
	}
}

// gather takes first and whatever else is already waiting.
func (s *Store) gather(first *writeOp) []*writeOp {
	group := []*writeOp{first}
	for len(group) < maxGroup {
		select {
		case op := <-s.ops:
			group = append(group, op)
		default:
			return group
		}
	}
	return group
}

// drain commits writes that were queued before Close.
func (s *Store) drain() {
	for {
		select {
		case op := <-s.ops:
			s.commit(s.gather(op))
		default:
			return
		}
	}
}

func (s *Store) commit(group []*writeOp) {
	failed := -1
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, op := range group {
			if err := op.fn(&Tx{tx: tx}); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, op := range group {
			op.done <- nil
		}
		return
	}
	if failed < 0 {
		// The commit itself failed (disk, sync): every write in it failed.
		for _, op := range group {
			op.done <- fmt.Errorf("commit state: %w", err)
		}
		return
	}
	// One write refused: it alone gets the error; retry the others one by one.
	group[failed].done <- err
	for i, op := range group {
		if i != failed {
			op.done <- s.db.Update(func(tx *bolt.Tx) error { return op.fn(&Tx{tx: tx}) })
		}
	}
}
