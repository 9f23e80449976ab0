// Package periodic runs a function at intervals until a context ends.
package periodic

import (
	"context"
	"time"
)

// Run calls fn an interval after the start and then an interval after each
// call returns, until ctx ends: two calls are always at least an interval
// apart, and a slow call delays the next rather than being followed at once.
func Run(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
		t.Reset(interval)
	}
}
