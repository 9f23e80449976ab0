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
	RunWoken(ctx, interval, nil, fn)
}

// RunWoken is Run, and also calls fn as soon as wake receives, for an event
// that makes waiting for the interval pointless (a lost service is back);
// the interval starts again after that call.
func RunWoken(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func()) {
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn()
		t.Reset(interval)
	}
}
