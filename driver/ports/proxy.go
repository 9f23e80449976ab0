package ports

import "sync/atomic"

// ProxyStats counts what the proxies of all Reservers forwarded.
type ProxyStats struct {
	TCPConns    atomic.Uint64 // connections accepted and forwarded
	TCPFailed   atomic.Uint64 // connections whose target could not be dialled
	UDPFlows    atomic.Uint64 // UDP clients forwarded (one per client address)
	UDPDropped  atomic.Uint64 // datagrams dropped: too many clients or no target
	ActiveConns atomic.Int64  // TCP connections and UDP flows open now
}

// Proxied is the process-wide proxy counters (for metrics).
var Proxied ProxyStats
