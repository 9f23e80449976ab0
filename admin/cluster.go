package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mynet/mynet/cluster"
)

// ClusterHandlers serve the cluster commands; nil when the daemon runs
// without --cluster.
type ClusterHandlers struct {
	Hosts  func(context.Context) ([]cluster.HostStatus, error)
	Forget func(ctx context.Context, host string) error
}

// ForgetRequest is what `mynet cluster forget HOST` posts.
type ForgetRequest struct {
	Host string `json:"host"`
}

const noCluster = "this mynet runs without --cluster: there is no cluster to show"

func serveCluster(mux *http.ServeMux, h *ClusterHandlers) {
	mux.HandleFunc("GET /v1/cluster/hosts", func(w http.ResponseWriter, r *http.Request) {
		if h == nil {
			http.Error(w, noCluster, http.StatusNotFound)
			return
		}
		hosts, err := h.Hosts(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(hosts)
	})
	mux.HandleFunc("POST /v1/cluster/forget", func(w http.ResponseWriter, r *http.Request) {
		if h == nil {
			http.Error(w, noCluster, http.StatusNotFound)
			return
		}
		var req ForgetRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.Host == "" {
			http.Error(w, "bad forget request: give the host", http.StatusBadRequest)
			return
		}
		if err := h.Forget(r.Context(), req.Host); err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, cluster.ErrAlive) || errors.Is(err, cluster.ErrInvalid) {
				code = http.StatusConflict
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// runCluster is `mynet cluster hosts` and `mynet cluster forget HOST`, asked
// of the running daemon (it holds the etcd connection and settings).
func runCluster(args []string, defaultState string, stdout, stderr io.Writer) int {
	usage := "usage: mynet cluster hosts [--json] | mynet cluster forget HOST   [--state FILE]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return ExitUsage
	}
	sub := args[0]
	fs, statePath, asJSON := commandFlags("mynet cluster "+sub, defaultState, "ask", stderr)
	positional, err := parseAnyOrder(fs, args[1:])
	if err != nil {
		return ExitUsage
	}
	sock := SocketPath(*statePath)
	switch {
	case sub == "hosts" && len(positional) == 0:
		resp, err := client(sock, 2*time.Minute).Get("http://mynet/v1/cluster/hosts")
		if !answered(resp, err, http.StatusOK, "mynet cluster hosts", sock, stderr) {
			return ExitError
		}
		var hosts []cluster.HostStatus
		if err := decodeAnswer(resp, &hosts); err != nil {
			fmt.Fprintf(stderr, "mynet cluster hosts: %v\n", err)
			return ExitError
		}
		if *asJSON {
			writeJSON(stdout, hosts)
			return ExitOK
		}
		table := [][]string{{"HOST", "ADVERTISE", "ALIVE", "NETWORKS", "ENDPOINTS", "ADDRESSES"}}
		for _, h := range hosts {
			alive := "no"
			if h.Alive {
				alive = "yes"
			}
			nets := strings.Join(h.Networks, ",")
			if nets == "" {
				nets = "-"
			}
			table = append(table, []string{h.ID, orDash(h.Advertise.String(), h.Advertise.IsValid()), alive, nets,
				strconv.Itoa(h.Endpoints), strconv.Itoa(h.Addresses)})
		}
		writeTable(stdout, table)
		return ExitOK
	case sub == "forget" && len(positional) == 1:
		resp, err := postJSON(sock, 2*time.Minute, "/v1/cluster/forget", ForgetRequest{Host: positional[0]})
		if !answered(resp, err, http.StatusNoContent, "mynet cluster forget", sock, stderr) {
			return ExitError
		}
		defer resp.Body.Close()
		fmt.Fprintf(stdout, "host %s forgotten: its addresses cool down and are then free, its endpoints and memberships are gone\n", positional[0])
		return ExitOK
	}
	fmt.Fprintln(stderr, usage)
	return ExitUsage
}

// answered says whether the daemon answered a cluster command with want;
// otherwise it tells stderr why, prefixed with cmd.
func answered(resp *http.Response, err error, want int, cmd, sock string, stderr io.Writer) bool {
	if err != nil {
		fmt.Fprintf(stderr, "%s: no mynet daemon answers on %s (the cluster commands ask the running daemon): %v\n", cmd, sock, err)
		return false
	}
	if resp.StatusCode != want {
		fmt.Fprintf(stderr, "%s: %s\n", cmd, reason(resp))
		return false
	}
	return true
}
