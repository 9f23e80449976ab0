package state

import (
	"sync/atomic"
	"time"
)

// spentNanos adds up the time callers spent inside Update and View (waiting
// for the writer, the transaction, the fsync), process-wide, so a caller can
// take the difference across a piece of work (driver/timing does).
var spentNanos atomic.Int64

// Spent is the cumulative time spent in Update and View since start.
func Spent() time.Duration { return time.Duration(spentNanos.Load()) }

func spend(start time.Time) { spentNanos.Add(int64(time.Since(start))) }
