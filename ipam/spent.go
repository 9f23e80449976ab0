package ipam

import (
	"sync/atomic"
	"time"
)

// netlinkNanos adds up the time HostNetworks spends asking the kernel for
// routes and addresses, process-wide (driver/timing adds it to the netlink
// share of a request).
var netlinkNanos atomic.Int64

// NetlinkSpent is the cumulative time spent in netlink calls since start.
func NetlinkSpent() time.Duration { return time.Duration(netlinkNanos.Load()) }
