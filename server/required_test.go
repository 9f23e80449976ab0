package server

import (
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mynet/mynet/internal/testutil"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/timing"
)

// requiredFields are what Docker always sends in each call. A body without
// them (a retry whose buffer was drained arrives empty) must be refused, not
// answered as a request for defaults.
var requiredFields = map[string][]string{
	"NetworkDriver.CreateNetwork":               {"NetworkID"},
	"NetworkDriver.DeleteNetwork":               {"NetworkID"},
	"NetworkDriver.CreateEndpoint":              {"NetworkID", "EndpointID"},
	"NetworkDriver.DeleteEndpoint":              {"NetworkID", "EndpointID"},
	"NetworkDriver.EndpointOperInfo":            {"NetworkID", "EndpointID"},
	"NetworkDriver.Join":                        {"NetworkID", "EndpointID", "SandboxKey"},
	"NetworkDriver.Leave":                       {"NetworkID", "EndpointID"},
	"NetworkDriver.ProgramExternalConnectivity": {"NetworkID", "EndpointID"},
	"NetworkDriver.RevokeExternalConnectivity":  {"NetworkID", "EndpointID"},
	"NetworkDriver.DiscoverNew":                 {"DiscoveryType"},
	"NetworkDriver.DiscoverDelete":              {"DiscoveryType"},
	"NetworkDriver.AllocateNetwork":             {"NetworkID"},
	"NetworkDriver.FreeNetwork":                 {"NetworkID"},
	"IpamDriver.RequestPool":                    {"AddressSpace"},
	"IpamDriver.ReleasePool":                    {"PoolID"},
	"IpamDriver.RequestAddress":                 {"PoolID"},
	"IpamDriver.ReleaseAddress":                 {"PoolID", "Address"},
}

// noArgCalls take no argument and keep answering an empty or null body.
var noArgCalls = []string{"Plugin.Activate", "NetworkDriver.GetCapabilities", "IpamDriver.GetCapabilities", "IpamDriver.GetDefaultAddressSpaces"}

// served is the protocol routes with a real IPAM on a temporary store,
// behind a real HTTP server (which, as the daemon's, survives a handler
// panic). The network driver is nil: a call that reaches it fails.
func served(t *testing.T) (*httptest.Server, *ipam.Driver) {
	t.Helper()
	id := testutil.IPAM(t)
	srv := httptest.NewServer(NewWithConfig(Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), IPAM: id}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // net/http logs the panics it recovers
	t.Cleanup(srv.Close)
	return srv, id
}

func postTo(t *testing.T, srv *httptest.Server, call, body string) (int, string) {
	t.Helper()
	r, err := srv.Client().Post(srv.URL+"/"+call, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	var out struct{ Err, Error string }
	raw, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		return r.StatusCode, "answer is not JSON: " + string(raw)
	}
	if out.Err != out.Error {
		return r.StatusCode, "Err and Error differ: " + string(raw)
	}
	return r.StatusCode, out.Err
}

func TestEmptyOrNullBodiesNameTheMissingField(t *testing.T) {
	srv, id := served(t)
	for call, fields := range requiredFields {
		for _, body := range []string{"", "null", " null\n", "{}", `{"Options":{}}`} {
			code, msg := postTo(t, srv, call, body)
			if code != http.StatusBadRequest {
				t.Errorf("%s %q: status %d (%s), want 400", call, body, code, msg)
				continue
			}
			if !strings.Contains(msg, call) {
				t.Errorf("%s %q: %q does not name the call", call, body, msg)
			}
			for _, f := range fields {
				if !strings.Contains(msg, f) {
					t.Errorf("%s %q: %q does not name the missing %s", call, body, msg, f)
				}
			}
		}
	}
	if u := id.Usage(); len(u) != 0 {
		t.Errorf("refused requests left pools: %v", u)
	}
	// Present but empty is missing too.
	if code, msg := postTo(t, srv, "IpamDriver.ReleaseAddress", `{"PoolID":"LocalDefault/10.1.0.0/24","Address":""}`); code != 400 || !strings.Contains(msg, "Address") || strings.Contains(msg, "PoolID") {
		t.Errorf("ReleaseAddress with an empty Address: %d %q", code, msg)
	}
	for _, call := range noArgCalls {
		for _, body := range []string{"", "null", "{}"} {
			if code, msg := postTo(t, srv, call, body); code != 200 {
				t.Errorf("%s %q: %d %s, want 200", call, body, code, msg)
			}
		}
	}
}

// A handler that panics answers 500 naming the call, and ends its timing
// span, so later calls are not all logged as overlapped.
func TestPanickingHandlerAnswersAndEndsItsSpan(t *testing.T) {
	var logs testutil.LockedBuffer
	m := &mux{ServeMux: http.NewServeMux(), log: slog.New(slog.NewTextHandler(&logs, nil))}
	var outcome string
	m.observe = func(_, o string, _ timing.Result) { outcome = o }
	route(m, "/Test.Panic", func(*struct{}) (any, error) { panic("boom") })
	srv := httptest.NewServer(m)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // net/http logs the panics it recovers
	defer srv.Close()

	code, msg := postTo(t, srv, "Test.Panic", "{}")
	if code != http.StatusInternalServerError || !strings.Contains(msg, "Test.Panic") || !strings.Contains(msg, "boom") {
		t.Errorf("panicking call answered %d %q, want 500 naming the call and the panic", code, msg)
	}
	if outcome != Error {
		t.Errorf("observed outcome %q, want %q", outcome, Error)
	}
	if lines := linesWith(&logs, "goroutine"); len(lines) == 0 {
		t.Errorf("no stack in the log:\n%s", logs.String())
	}
	if r := timing.Begin().End(); !r.Alone {
		t.Fatal("a span after the panic is not alone: the panicking call's span was left open")
	}
}
