package periodic

import (
	"context"
	"testing"
	"time"
)

func TestRunCallsUntilCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{})
	done := make(chan struct{})
	go func() {
		Run(ctx, time.Millisecond, func() { calls <- struct{}{} })
		close(done)
	}()
	for range 3 {
		<-calls
	}
	cancel()
	for {
		select {
		case <-calls: // a call that was under way when ctx ended
		case <-done:
			return
		}
	}
}

func TestRunReturnsAtOnceWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Run(ctx, time.Hour, func() { t.Error("called after ctx ended") })
}
