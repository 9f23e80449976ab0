package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mynet/mynet/internal/testutil"
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
