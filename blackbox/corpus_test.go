package blackbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
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
		t.Logf("daemon log:\n%s", d.log())
	}
}

// What moves on its own: rule counters, bridge timers, IPv6 DAD state, and
// carrier (a bridge loses it when its first port, a veth without a peer up,
// joins).
var (
	counters = regexp.MustCompile(`\[\d+:\d+\]`)
	timers   = regexp.MustCompile(`(_timer)\s+[0-9.]+`)
	dad      = regexp.MustCompile(` tentative\b`)
	carrier  = regexp.MustCompile(`NO-CARRIER,|,M-DOWN| state [A-Z]+| linkdown`)
)

// kernel is everything a request could change in the namespace, as text.
func (d *daemon) kernel(t *testing.T) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, c := range [][]string{
		{"ip", "-d", "link"}, {"ip", "addr"}, {"ip", "route"}, {"ip", "-6", "route"},
		{"iptables-save"}, {"ip6tables-save"},
		{"sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"},
	} {
		out := d.inNetns(t, c...)
		if strings.HasSuffix(c[0], "-save") {
			var keep []string
			for _, l := range strings.Split(out, "\n") {
				if !strings.HasPrefix(l, "#") {
					keep = append(keep, counters.ReplaceAllString(l, ""))
				}
			}
			out = strings.Join(keep, "\n")
		}
		out = carrier.ReplaceAllString(dad.ReplaceAllString(timers.ReplaceAllString(out, "$1"), ""), "")
		snap[strings.Join(c, " ")] = out
	}
	return snap
}

// store is the daemon's own view: networks, endpoints and IPAM pools, over
// its admin socket.
func (d *daemon) store(t *testing.T) string {
	t.Helper()
	r, err := unixClient(d.admin).Get("http://mynet/v1/snapshot")
	if err != nil {
		t.Fatalf("admin snapshot: %v", err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("admin snapshot is not JSON: %v %s", err, b)
	}
	pretty, _ := json.MarshalIndent(v, "", " ")
	return string(pretty)
}

type snapshot struct {
	kernel map[string]string
	store  string
}

func (d *daemon) snapshot(t *testing.T) snapshot {
	return snapshot{kernel: d.kernel(t), store: d.store(t)}
}

// diff names what changed between two snapshots, "" if nothing.
func (a snapshot) diff(b snapshot) string {
	var out []string
	for k, v := range a.kernel {
		if b.kernel[k] != v {
			out = append(out, fmt.Sprintf("%s changed:\n--- before\n%s\n--- after\n%s", k, v, b.kernel[k]))
		}
	}
	if a.store != b.store {
		out = append(out, fmt.Sprintf("store changed:\n--- before\n%s\n--- after\n%s", a.store, b.store))
	}
	return strings.Join(out, "\n")
}
