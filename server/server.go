// Package server serves both remote protocols (network driver and IPAM
// driver) over HTTP: one route per call, JSON in and out, errors in the
// shape each protocol reads.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/docker/go-plugins-helpers/network"

	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/timing"
)

// maxBody bounds request bodies: Docker's largest (a CreateEndpoint with a
// long port map) is a few KiB.
const maxBody = 1 << 20

// Outcomes of a call, as Observe hears them.
const (
	OK         = "ok"
	BadRequest = "bad_request" // malformed, too large, or refused as invalid (HTTP 4xx)
	Error      = "error"       // the call failed (HTTP 500)
)

// Config is what NewWithConfig needs.
type Config struct {
	Log     *slog.Logger
	Network *driver.Driver
	IPAM    *ipam.Driver
	// Observe, when set, hears about every routed call once it is answered:
	// the call ("IpamDriver.RequestPool"), its outcome, and its timing.
	Observe func(call, outcome string, r timing.Result)
}

type mux struct {
	*http.ServeMux
	log     *slog.Logger
	observe func(call, outcome string, r timing.Result)
}

// New answers both protocols' calls with nd (network) and id (IPAM).
func New(log *slog.Logger, nd *driver.Driver, id *ipam.Driver) http.Handler {
	return NewWithConfig(Config{Log: log, Network: nd, IPAM: id})
}

// NewWithConfig is New with an observer.
func NewWithConfig(c Config) http.Handler {
	log, nd, id := c.Log, c.Network, c.IPAM
	m := &mux{ServeMux: http.NewServeMux(), log: log, observe: c.Observe}
	if m.observe == nil {
		m.observe = func(string, string, timing.Result) {}
	}
	m.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]string{"Implements": {"NetworkDriver", "IpamDriver"}})
	})

	noBody(m, "/NetworkDriver.GetCapabilities", func() (any, error) { return nd.GetCapabilities(), nil })
	route(m, "/NetworkDriver.GwAllocCheck", nd.GwAllocCheck)
	route(m, "/NetworkDriver.CreateNetwork", empty(nd.CreateNetwork))
	route(m, "/NetworkDriver.DeleteNetwork", empty(nd.DeleteNetwork))
	route(m, "/NetworkDriver.CreateEndpoint", nd.CreateEndpoint)
	route(m, "/NetworkDriver.DeleteEndpoint", empty(nd.DeleteEndpoint))
	route(m, "/NetworkDriver.EndpointOperInfo", nd.EndpointInfo)
	route(m, "/NetworkDriver.Join", nd.Join)
	route(m, "/NetworkDriver.Leave", empty(nd.Leave))
	route(m, "/NetworkDriver.ProgramExternalConnectivity", empty(nd.ProgramExternalConnectivity))
	route(m, "/NetworkDriver.RevokeExternalConnectivity", empty(nd.RevokeExternalConnectivity))
	route(m, "/NetworkDriver.DiscoverNew", empty(func(*network.DiscoveryNotification) error { return nil }))
	route(m, "/NetworkDriver.DiscoverDelete", empty(func(*network.DiscoveryNotification) error { return nil }))
	route(m, "/NetworkDriver.AllocateNetwork", func(*network.AllocateNetworkRequest) (any, error) {
		return nil, errors.New("AllocateNetwork is for swarm (global scope) drivers: mynet is local scope")
	})
	route(m, "/NetworkDriver.FreeNetwork", empty(func(*network.FreeNetworkRequest) error { return nil }))

	noBody(m, "/IpamDriver.GetCapabilities", func() (any, error) { return id.GetCapabilities(), nil })
	noBody(m, "/IpamDriver.GetDefaultAddressSpaces", func() (any, error) { return id.GetDefaultAddressSpaces(), nil })
	route(m, "/IpamDriver.RequestPool", func(r *ipam.PoolRequest) (any, error) { return id.RequestPool(*r) })
	route(m, "/IpamDriver.ReleasePool", empty(func(r *struct{ PoolID string }) error { return id.ReleasePool(r.PoolID) }))
	route(m, "/IpamDriver.RequestAddress", func(r *ipam.AddressRequest) (any, error) { return id.RequestAddress(*r) })
	route(m, "/IpamDriver.ReleaseAddress", empty(func(r *struct{ PoolID, Address string }) error {
		return id.ReleaseAddress(r.PoolID, r.Address)
	}))
	return m
}

// empty adapts a call that answers nothing but an error.
func empty[Req any](fn func(*Req) error) func(*Req) (any, error) {
	return func(r *Req) (any, error) { return struct{}{}, fn(r) }
}

func noBody(m *mux, path string, fn func() (any, error)) {
	route(m, path, func(*struct{}) (any, error) { return fn() })
}

// route registers one protocol call: decode the JSON body, call fn, encode
// the answer. Errors go back as {"Err": ...} (what the network protocol
// reads) and {"Error": ...} (what the IPAM protocol reads) with a non-200
// status, which Docker shows as "<Iface>.<Method>: <message>".
func route[Req any, Resp any](m *mux, path string, fn func(*Req) (Resp, error)) {
	call := strings.TrimPrefix(path, "/")
	m.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		span := timing.Begin()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			m.fail(w, call, nil, span, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: %w (at most %d bytes)", err, maxBody))
			return
		}
		req := new(Req)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, req); err != nil {
				m.fail(w, call, body, span, http.StatusBadRequest, fmt.Errorf("malformed %s request: %v", call, err))
				return
			}
		}
		resp, err := fn(req)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, driver.ErrBadRequest) || errors.Is(err, ipam.ErrBadRequest) {
				status = http.StatusBadRequest
			}
			m.fail(w, call, body, span, status, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
		res := span.End()
		m.log.Debug("request", append([]any{"call", call, "ids", ids(body)}, res.LogAttrs()...)...)
		m.observe(call, OK, res)
	})
}

func (m *mux) fail(w http.ResponseWriter, call string, body []byte, span timing.Span, status int, err error) {
	msg := strings.TrimPrefix(err.Error(), "bad request: ")
	writeJSON(w, status, map[string]string{"Err": msg, "Error": msg})
	res := span.End()
	m.log.Warn("request failed", append([]any{"call", call, "ids", ids(body), "err", msg}, res.LogAttrs()...)...)
	outcome := Error
	if status < 500 {
		outcome = BadRequest
	}
	m.observe(call, outcome, res)
}

// ids pulls the ids out of a request body for log lines.
func ids(body []byte) string {
	var v struct{ NetworkID, EndpointID, PoolID, Address string }
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	var parts []string
	for _, kv := range [][2]string{{"network", v.NetworkID}, {"endpoint", v.EndpointID}, {"pool", v.PoolID}, {"address", v.Address}} {
		if kv[1] != "" {
			id := kv[1]
			if kv[0] == "network" || kv[0] == "endpoint" {
				id = id[:min(12, len(id))]
			}
			parts = append(parts, kv[0]+"="+id)
		}
	}
	return strings.Join(parts, " ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.2+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
