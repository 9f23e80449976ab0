package link

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Reaper deletes links in the background. Deleting a veth or a bridge costs
// tens of milliseconds, nearly all of it the kernel waiting for an RCU
// barrier after the link is already unregistered; a caller that only needs
// the link out of the way hands it over and answers at once.
//
// It works in the network namespace it was made in, whichever thread its
// goroutines run on. Whoever creates a link of a name handed over calls Wait
// first, so a name that comes back at once never meets its old link.
type Reaper struct {
	ns      netns.NsHandle
	onError func(names []string, err error)

	mu      sync.Mutex
	pending map[string]chan struct{} // name -> closed when its deletion ends
	wg      sync.WaitGroup
}

// NewReaper makes a reaper for the calling thread's network namespace;
// onError hears deletions that failed (the link stays, for the next start's
// orphan search to find).
func NewReaper(onError func(names []string, err error)) (*Reaper, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("link reaper: open this network namespace: %w", err)
	}
	return &Reaper{ns: ns, onError: onError, pending: map[string]chan struct{}{}}, nil
}

// Delete hands links over for deletion, in this order, by one goroutine:
// both ends of a veth pair go with the first. Missing links are fine; a name
// already handed over is not handed over twice.
func (r *Reaper) Delete(names ...string) {
	done := make(chan struct{})
	var todo []string
	r.mu.Lock()
	for _, n := range names {
		if _, ok := r.pending[n]; n != "" && !ok {
			r.pending[n] = done
			todo = append(todo, n)
		}
	}
	if len(todo) > 0 {
		r.wg.Add(1)
	}
	r.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	go func() {
		defer r.wg.Done()
		err := r.deleteAll(todo)
		r.mu.Lock()
		for _, n := range todo {
			delete(r.pending, n)
		}
		r.mu.Unlock()
		close(done)
		if err != nil && r.onError != nil {
			r.onError(todo, err)
		}
	}()
}

// deleteAll deletes every name it can; one that fails does not keep the
// others.
func (r *Reaper) deleteAll(names []string) error {
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	var errs []error
	for _, n := range names {
		l, err := h.LinkByName(n)
		switch {
		case isNotFound(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("find %s: %w", n, err))
		default:
			if err := h.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s: %w", n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Wait returns once none of the names is being deleted.
func (r *Reaper) Wait(names ...string) {
	for _, n := range names {
		r.mu.Lock()
		done, ok := r.pending[n]
		r.mu.Unlock()
		if ok {
			<-done
		}
	}
}

// Pending lists the names being deleted now.
func (r *Reaper) Pending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.pending))
	for n := range r.pending {
		out = append(out, n)
	}
	return out
}

// Close waits for every deletion handed over, then lets the namespace go.
func (r *Reaper) Close() {
	r.wg.Wait()
	r.ns.Close()
}
