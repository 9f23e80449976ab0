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
	"reflect"
	"runtime/debug"
	"strings"

	"github.com/docker/go-plugins-helpers/network"

	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/protocol"
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

	// After each route: the fields Docker always sends, so a body without
	// them (a retry whose buffer was already drained arrives empty) is
	// refused instead of being answered as a request for defaults.
	noBody(m, "/NetworkDriver.GetCapabilities", func() (any, error) { return nd.GetCapabilities(), nil })
	route(m, "/NetworkDriver.GwAllocCheck", nd.GwAllocCheck)
	route(m, "/NetworkDriver.CreateNetwork", empty(nd.CreateNetwork), "NetworkID")
	route(m, "/NetworkDriver.DeleteNetwork", empty(nd.DeleteNetwork), "NetworkID")
	route(m, "/NetworkDriver.CreateEndpoint", nd.CreateEndpoint, "NetworkID", "EndpointID")
	route(m, "/NetworkDriver.DeleteEndpoint", empty(nd.DeleteEndpoint), "NetworkID", "EndpointID")
	route(m, "/NetworkDriver.EndpointOperInfo", nd.EndpointInfo, "NetworkID", "EndpointID")
	route(m, "/NetworkDriver.Join", nd.Join, "NetworkID", "EndpointID", "SandboxKey")
	route(m, "/NetworkDriver.Leave", empty(nd.Leave), "NetworkID", "EndpointID")
	route(m, "/NetworkDriver.ProgramExternalConnectivity", empty(nd.ProgramExternalConnectivity), "NetworkID", "EndpointID")
	route(m, "/NetworkDriver.RevokeExternalConnectivity", empty(nd.RevokeExternalConnectivity), "NetworkID", "EndpointID")
	route(m, "/NetworkDriver.DiscoverNew", empty(func(*network.DiscoveryNotification) error { return nil }), "DiscoveryType")
	route(m, "/NetworkDriver.DiscoverDelete", empty(func(*network.DiscoveryNotification) error { return nil }), "DiscoveryType")
	route(m, "/NetworkDriver.AllocateNetwork", func(*network.AllocateNetworkRequest) (any, error) {
		return nil, errors.New("AllocateNetwork is for swarm (global scope) drivers: mynet is local scope")
	}, "NetworkID")
	route(m, "/NetworkDriver.FreeNetwork", empty(func(*network.FreeNetworkRequest) error { return nil }), "NetworkID")

	noBody(m, "/IpamDriver.GetCapabilities", func() (any, error) { return id.GetCapabilities(), nil })
	noBody(m, "/IpamDriver.GetDefaultAddressSpaces", func() (any, error) { return id.GetDefaultAddressSpaces(), nil })
	route(m, "/IpamDriver.RequestPool", func(r *ipam.PoolRequest) (any, error) { return id.RequestPool(*r) }, "AddressSpace")
	route(m, "/IpamDriver.ReleasePool", empty(func(r *struct{ PoolID string }) error { return id.ReleasePool(r.PoolID) }), "PoolID")
	route(m, "/IpamDriver.RequestAddress", func(r *ipam.AddressRequest) (any, error) { return id.RequestAddress(*r) }, "PoolID")
	route(m, "/IpamDriver.ReleaseAddress", empty(func(r *struct{ PoolID, Address string }) error {
		return id.ReleaseAddress(r.PoolID, r.Address)
	}), "PoolID", "Address")
	return m
}

// empty adapts a call that answers nothing but an error.
func empty[Req any](fn func(*Req) error) func(*Req) (any, error) {
	return func(r *Req) (any, error) { return struct{}{}, fn(r) }
}

func noBody(m *mux, path string, fn func() (any, error)) {
	route(m, path, func(*struct{}) (any, error) { return fn() })
}

// route registers one protocol call: decode the JSON body, check that the
// required fields are there (named as in the body; empty counts as missing),
// call fn, encode the answer. Errors go back as {"Err": ...} (what the
// network protocol reads) and {"Error": ...} (what the IPAM protocol reads)
// with a non-200 status, which Docker shows as "<Iface>.<Method>: <message>".
func route[Req any, Resp any](m *mux, path string, fn func(*Req) (Resp, error), required ...string) {
	call := strings.TrimPrefix(path, "/")
	for _, f := range required {
		if _, ok := reflect.TypeFor[Req]().FieldByName(f); !ok {
			panic(fmt.Sprintf("route %s: required field %s is not in %v", call, f, reflect.TypeFor[Req]()))
		}
	}
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
		if err := checkRequired(call, body, req, required); err != nil {
			m.fail(w, call, body, span, http.StatusBadRequest, err)
			return
		}
		resp, err := callSafely(call, fn, req, m.log)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, protocol.ErrBadRequest) {
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

// checkRequired names the required fields req lacks.
func checkRequired[Req any](call string, body []byte, req *Req, required []string) error {
	var missing []string
	v := reflect.ValueOf(req).Elem()
	for _, f := range required {
		if v.FieldByName(f).IsZero() {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	verb := "is"
	if len(missing) > 1 {
		verb = "are"
	}
	if b := strings.TrimSpace(string(body)); b == "" || b == "null" {
		return fmt.Errorf("empty %s request: %s %s required", call, strings.Join(missing, " and "), verb)
	}
	pronoun := "it"
	if len(missing) > 1 {
		pronoun = "they"
	}
	return fmt.Errorf("%s request without %s: %s %s required", call, strings.Join(missing, " and "), pronoun, verb)
}

// callSafely runs fn and turns a panic into an error, so that the caller
// still answers and ends its timing span: a span left open would make every
// later call look overlapped.
func callSafely[Req any, Resp any](call string, fn func(*Req) (Resp, error), req *Req, log *slog.Logger) (resp Resp, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("request panicked: a bug in mynet", "call", call, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error in %s: %v (a bug in mynet: the daemon log has the stack)", call, p)
		}
	}()
	return fn(req)
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
				id = protocol.Short(id)
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
