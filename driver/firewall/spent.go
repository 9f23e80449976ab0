package firewall

import (
	"sync/atomic"
	"time"
)

// spentNanos adds up the time spent running iptables-save and
// iptables-restore (both families), process-wide, so a caller can take the
// difference across a piece of work (driver/timing does).
var spentNanos atomic.Int64

// Spent is the cumulative time spent in iptables processes since start.
func Spent() time.Duration { return time.Duration(spentNanos.Load()) }

func spend(start time.Time) { spentNanos.Add(int64(time.Since(start))) }
