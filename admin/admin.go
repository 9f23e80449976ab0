// Package admin is the operator's view of mynet: a root-only socket the
// daemon serves its state on, and the commands (mynet networks, endpoints,
// pools, ports) that print it. The daemon holds bbolt's exclusive lock, so
// while it runs the commands ask it; when it does not run they read the
// state file themselves.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/state"
)

// Snapshot is everything the commands show.
type Snapshot struct {
	Source    string           `json:"source"` // "daemon" or "state file"
	Networks  []state.Network  `json:"networks"`
	Endpoints []state.Endpoint `json:"endpoints"`
	Pools     []ipam.PoolUsage `json:"pools"`
}

// SocketPath is where the daemon serves the admin API for a state file.
func SocketPath(statePath string) string { return statePath + ".sock" }

// DoctorRequest is what `mynet doctor` sends the daemon: Docker's view (the
// CLI reads it, so an operator gets an answer now, whatever the daemon's
// own background reconcile does) and whether to repair.
type DoctorRequest struct {
	View    drift.View `json:"view"`
	HasView bool       `json:"has_view"` // false: --no-docker, kernel only
	Fix     bool       `json:"fix"`
	Force   bool       `json:"force"` // fix even if the view shares no network with the store
	Grace   string     `json:"grace"` // a Go duration
}

// Handlers are what the admin socket serves.
type Handlers struct {
	Snapshot func() Snapshot
	// Doctor answers a doctor request; an error is a refusal to repair,
	// sent back as 409 with its text.
	Doctor  func(DoctorRequest, time.Duration) ([]drift.Drift, error)
	Cluster *ClusterHandlers // nil: no --cluster
}

// Serve answers GET /v1/snapshot, POST /v1/doctor and the cluster routes
// (cluster.go) on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h Handlers) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		s := h.Snapshot()
		s.Source = "daemon"
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	})
	mux.HandleFunc("POST /v1/doctor", func(w http.ResponseWriter, r *http.Request) {
		var req DoctorRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20)).Decode(&req); err != nil {
			http.Error(w, "bad doctor request: "+err.Error(), http.StatusBadRequest)
			return
		}
		grace, err := time.ParseDuration(req.Grace)
		if err != nil || grace < 0 {
			http.Error(w, fmt.Sprintf("bad grace %q: give a duration such as 30s", req.Grace), http.StatusBadRequest)
			return
		}
		drifts, err := h.Doctor(req, grace)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if drifts == nil {
			drifts = []drift.Drift{}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(drifts)
	})
	serveCluster(mux, h.Cluster)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	// Shutdown closes the listener (main's deferred Close) as well as ctx:
	// either way is the normal end, not an error to log.
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Load asks the daemon for its snapshot, or reads the state file when no
// daemon serves it.
func Load(statePath string) (Snapshot, error) {
	s, err := fetch(SocketPath(statePath))
	if err == nil {
		return s, nil
	}
	if _, statErr := os.Stat(statePath); statErr != nil {
		return Snapshot{}, fmt.Errorf("no mynet daemon answers on %s and there is no state file %s: is --state right?", SocketPath(statePath), statePath)
	}
	return readStateFile(statePath)
}

// client talks to the daemon's admin socket.
func client(sock string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

// postJSON posts v, as JSON, to path on the daemon's admin socket.
func postJSON(sock string, timeout time.Duration, path string, v any) (*http.Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return client(sock, timeout).Post("http://mynet"+path, "application/json", bytes.NewReader(body))
}

// decodeAnswer reads a daemon's JSON answer into out and closes the body.
func decodeAnswer(resp *http.Response, out any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode the daemon's answer: %w", err)
	}
	return nil
}

// reason is the one line a daemon's refusal carries; it closes the body.
func reason(resp *http.Response) string {
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(msg))
}

func fetch(sock string) (Snapshot, error) {
	resp, err := client(sock, 10*time.Second).Get("http://mynet/v1/snapshot")
	if err != nil {
		return Snapshot{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Snapshot{}, fmt.Errorf("admin socket answered %s: %s", resp.Status, reason(resp))
	}
	var s Snapshot
	return s, decodeAnswer(resp, &s)
}

func readStateFile(path string) (Snapshot, error) {
	st, err := state.Open(path, state.Options{ReadOnly: true, LockTimeout: 2 * time.Second})
	if err != nil {
		return Snapshot{}, err
	}
	defer st.Close()
	s := Snapshot{Source: "state file"}
	err = st.View(func(tx *state.Tx) error {
		if s.Networks, err = tx.Networks(); err != nil {
			return err
		}
		s.Endpoints, err = tx.Endpoints()
		return err
	})
	if err != nil {
		return s, err
	}
	id, err := ipam.New(ipam.Config{Store: st})
	if err != nil {
		return s, err
	}
	s.Pools = id.Usage()
	return s, nil
}
