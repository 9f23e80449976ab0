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

// ipamMux serves the protocol routes with a real IPAM on a temporary store.
// The network driver is nil: these tests only call IPAM and generic paths.
func ipamMux(t testing.TB) http.Handler {
	return ipamMuxWith(t, Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// ipamMuxWith is ipamMux with the caller's logger and observer.
func ipamMuxWith(t testing.TB, c Config) http.Handler {
	c.IPAM = testutil.IPAM(t)
	return NewWithConfig(c)
}

func post(h http.Handler, path, body string) (int, map[string]any) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	var out map[string]any
	json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestActivateListsBothProtocols(t *testing.T) {
	code, out := post(ipamMux(t), "/Plugin.Activate", "")
	impl, _ := out["Implements"].([]any)
	if code != 200 || len(impl) != 2 || impl[0] != "NetworkDriver" || impl[1] != "IpamDriver" {
		t.Fatalf("activate: %d %v", code, out)
	}
}

func TestIPAMOverHTTP(t *testing.T) {
	h := ipamMux(t)
	code, out := post(h, "/IpamDriver.GetCapabilities", "")
	if code != 200 || out["RequiresRequestReplay"] != false {
		t.Fatalf("capabilities: %d %v", code, out)
	}
	code, out = post(h, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.70.0.0/24","V6":false}`)
	if code != 200 || out["PoolID"] != "LocalDefault/10.70.0.0/24" {
		t.Fatalf("pool: %d %v", code, out)
	}
	code, out = post(h, "/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.70.0.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}}`)
	if code != 200 || out["Address"] != "10.70.0.1/24" {
		t.Fatalf("gateway: %d %v", code, out)
	}
	code, out = post(h, "/IpamDriver.RequestAddress", `{"PoolID":"LocalDefault/10.70.0.0/24","Address":"10.70.0.1"}`)
	if code == 200 || !strings.Contains(out["Error"].(string), "10.70.0.1") || out["Err"] != out["Error"] {
		t.Fatalf("taken address: %d %v", code, out)
	}
}

func TestMalformedRequestsNameTheCall(t *testing.T) {
	h := ipamMux(t)
	for _, body := range []string{`{"Pool":`, `[1,2]`, `{"Pool": 5}`, "\x00\x01"} {
		code, out := post(h, "/IpamDriver.RequestPool", body)
		msg, _ := out["Err"].(string)
		if code != http.StatusBadRequest || !strings.Contains(msg, "malformed IpamDriver.RequestPool request") {
			t.Errorf("body %q: %d %v", body, code, out)
		}
	}
	code, _ := post(h, "/NetworkDriver.Nonsense", `{}`)
	if code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}
	big := `{"Pool":"` + strings.Repeat("x", maxBody) + `"}`
	if code, _ := post(h, "/IpamDriver.RequestPool", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d", code)
	}
}

// FuzzIPAMRequests posts arbitrary bodies to every IPAM call: no panic, a
// JSON answer every time, and never one address handed out twice.
func FuzzIPAMRequests(f *testing.F) {
	paths := []string{"/IpamDriver.RequestPool", "/IpamDriver.RequestAddress", "/IpamDriver.ReleaseAddress", "/IpamDriver.ReleasePool"}
	f.Add(uint8(0), `{"AddressSpace":"LocalDefault","Pool":"10.1.0.0/24"}`)
	f.Add(uint8(1), `{"PoolID":"LocalDefault/10.1.0.0/24"}`)
	f.Add(uint8(1), `{"PoolID":"LocalDefault/10.1.0.0/24","Address":"10.1.0.7"}`)
	f.Add(uint8(2), `{"PoolID":"LocalDefault/10.1.0.0/24","Address":"10.1.0.7"}`)
	f.Add(uint8(0), `{"AddressSpace":"LocalDefault","Pool":"fd00::/64","V6":true,"SubPool":"fd00::/80"}`)
	f.Add(uint8(3), `{"PoolID":"LocalDefault/10.1.0.0/24"}`)
	h := ipamMux(f)
	post(h, "/IpamDriver.RequestPool", `{"AddressSpace":"LocalDefault","Pool":"10.1.0.0/24"}`)
	held := map[string]bool{}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		path := paths[int(which)%len(paths)]
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q: answer is not JSON: %q", path, body, rec.Body.String())
		}
		if path == "/IpamDriver.RequestAddress" && rec.Code == 200 {
			var req struct{ PoolID string }
			json.Unmarshal([]byte(body), &req)
			key := req.PoolID + " " + out["Address"].(string)
			if held[key] {
				t.Fatalf("%s handed out twice", key)
			}
			held[key] = true
		}
		if path == "/IpamDriver.ReleaseAddress" || path == "/IpamDriver.ReleasePool" {
			for k := range held { // the model forgets conservatively
				delete(held, k)
			}
		}
	})
}

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
