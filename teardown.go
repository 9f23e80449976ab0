package main

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/mynet/mynet/drift"
)

// asyncTeardownAPI is the first Docker API version (Docker 28.1) whose
// libnetwork no longer keeps a stored endpoint count per network. Older
// engines race on that count when endpoints of one network go quickly one
// after the other, and now and then refuse `docker network rm` with "has
// active endpoints" for a network that has none; a DeleteEndpoint that
// answers at once makes that likelier.
const asyncTeardownAPI = "1.49"

// Intervals of followEngine: ask again soon while Docker does not answer
// (it waits for its plugins at boot), then now and then, since dockerd can
// be upgraded or downgraded under a running legacy plugin.
const (
	engineRetry = 2 * time.Second
	engineCheck = time.Minute
)

// followEngine turns async teardown on while the engine on socket speaks
// asyncTeardownAPI or later, and off while it speaks an older API. It stays
// off until the engine first answers, and keeps the last answer while
// dockerd restarts.
func followEngine(ctx context.Context, socket string, set func(bool), log *slog.Logger) {
	if socket == "" {
		log.Info("async teardown off: --docker-host is not a unix socket, so the engine's version is unknown")
		return
	}
	on, known := false, false
	for {
		v, err := drift.EngineAPIVersion(ctx, socket, dockerCallTimeout)
		if err == nil {
			if now := apiAtLeast(v, asyncTeardownAPI); !known || now != on {
				on, known = now, true
				set(on)
				log.Info("async teardown follows the engine", "api", v, "on", on, "from_api", asyncTeardownAPI)
			}
		}
		wait := engineCheck
		if !known {
			wait = engineRetry
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// apiAtLeast compares Docker API versions such as "1.41" and "1.49"; a
// version it cannot read is not at least anything.
func apiAtLeast(v, min string) bool {
	a, okA := apiVersion(v)
	b, okB := apiVersion(min)
	if !okA || !okB {
		return false
	}
	return a[0] > b[0] || a[0] == b[0] && a[1] >= b[1]
}

func apiVersion(s string) ([2]int, bool) {
	maj, minor, ok := strings.Cut(s, ".")
	x, err1 := strconv.Atoi(maj)
	y, err2 := strconv.Atoi(minor)
	return [2]int{x, y}, ok && err1 == nil && err2 == nil && x >= 0 && y >= 0
}
