package link

import (
	"sync/atomic"
	"time"
)

// spentNanos adds up the time spent in this package's kernel calls (netlink,
// plus the /proc/sys writes of SetSysctl), process-wide, so a caller can take
// the difference across a piece of work (driver/timing does). Each exported
// function counts itself once; they call each other only through the
// unexported cores, so nothing is counted twice.
var spentNanos atomic.Int64

// Spent is the cumulative time spent in kernel link calls since start.
func Spent() time.Duration { return time.Duration(spentNanos.Load()) }

func spend(start time.Time) { spentNanos.Add(int64(time.Since(start))) }
