package hostile

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// request is one entry of testdata/requests.json. The entries run in order
// against one daemon; "ok" entries build the state the later ones attack.
type request struct {
	Name string          `json:"name"`
	Call string          `json:"call"` // e.g. NetworkDriver.CreateNetwork
	JSON json.RawMessage `json:"json"` // the body as JSON, or
	Body *string         `json:"body"` // the body as raw text (malformed input)
	// PadTo grows Body's "%PAD%" marker until the body is this long.
	PadTo int `json:"padTo"`
	// Expect: "error" (refused; nothing changes), "noop" (succeeds; nothing
	// changes: an idempotent repeat) or "ok" (succeeds; may change state).
	Expect   string   `json:"expect"`
	Status   int      `json:"status"`   // the HTTP status, when it matters
	Contains []string `json:"contains"` // the error message names these
}

func (r request) body() []byte {
	if r.Body == nil {
		return r.JSON
	}
	b := *r.Body
	if r.PadTo > 0 {
		b = strings.Replace(b, "%PAD%", strings.Repeat("x", max(0, r.PadTo-len(b)+len("%PAD%"))), 1)
	}
	return []byte(b)
}

func loadCorpus(t *testing.T) []request {
	raw, err := os.ReadFile("testdata/requests.json")
	if err != nil {
		t.Fatal(err)
	}
	var rs []request
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rs); err != nil {
		t.Fatalf("testdata/requests.json: %v", err)
	}
	return rs
}

// TestHostileRequests posts every corpus entry to the real daemon's socket
// and checks the answer and that refused or repeated requests leave the
// namespace's links, addresses, routes, rules and sysctls and the daemon's
// store (networks, endpoints, pools) exactly as they were.
func TestHostileRequests(t *testing.T) {
	corpus := loadCorpus(t)
	d := startDaemon(t)
	before := d.snapshot(t)
	for i, r := range corpus {
		status, out := d.post(t, "/"+r.Call, r.body())
		var answer struct{ Err, Error string }
		json.Unmarshal(out, &answer)
		label := r.Name
		if label == "" {
			label = r.Call + " " + string(r.body())
		}
		label = strings.ToValidUTF8(label, "?")
		switch r.Expect {
		case "error":
			if status == 200 {
				t.Errorf("#%d %s: accepted (%s), want an error", i, label, out)
			}
			for _, want := range r.Contains {
				if !strings.Contains(answer.Err, want) {
					t.Errorf("#%d %s: error %q does not name %q", i, label, answer.Err, want)
				}
			}
		case "ok", "noop":
			if status != 200 || answer.Err != "" {
				t.Errorf("#%d %s: %d %s, want success", i, label, status, out)
			}
		default:
			t.Fatalf("#%d %s: expect %q: use error, noop or ok", i, label, r.Expect)
		}
		if r.Status != 0 && status != r.Status {
			t.Errorf("#%d %s: status %d, want %d (%s)", i, label, status, r.Status, out)
		}
		after := d.snapshot(t)
		if r.Expect != "ok" {
			if diff := before.diff(after); diff != "" {
				t.Errorf("#%d %s (%s) changed the namespace or the store:\n%s", i, label, r.Expect, diff)
			}
		}
		before = after
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", d.out)
	}
}
