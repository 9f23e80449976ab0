package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/mynet/mynet/drift"
)

const (
	// ExitDrift: mynet doctor found drift it did not (or could not) repair.
	ExitDrift = 4
	// ExitRefused: --fix refused, Docker's view shares no network with the
	// store (the wrong engine?); --force overrides.
	ExitRefused = 5
)

// runDoctor is `mynet doctor`: Docker's view from the Docker API, compared
// by the daemon with its store and the kernel, repaired with --fix.
func runDoctor(args []string, defaultState string, stdout, stderr io.Writer) int {
	fs, statePath, asJSON := commandFlags("mynet doctor", defaultState, "check", stderr)
	fix := fs.Bool("fix", false, "repair what is found")
	dockerHost := fs.String("docker-host", envOr("DOCKER_HOST", "unix:///var/run/docker.sock"), "Docker API socket (env DOCKER_HOST)")
	noDocker := fs.Bool("no-docker", false, "compare the store with the kernel only")
	force := fs.Bool("force", false, "with --fix: repair even when Docker's view shares no network with the store (only if Docker really has none of them)")
	grace := fs.Duration("grace", 30*time.Second, "leave records younger than this alone: Docker may be about to use them")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mynet doctor: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	sock, err := drift.ParseDockerHost(*dockerHost)
	if err != nil && !*noDocker {
		fmt.Fprintf(stderr, "mynet doctor: --docker-host %v\n", err)
		return ExitUsage
	}
	if *grace < 0 {
		fmt.Fprintf(stderr, "mynet doctor: --grace %s: give a duration of 0 or more\n", *grace)
		return ExitUsage
	}

	req := DoctorRequest{Fix: *fix, Force: *force, Grace: grace.String(), HasView: !*noDocker}
	if !*noDocker {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		v, err := drift.Fetch(ctx, sock, 30*time.Second)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "mynet doctor: %v\n", err)
			return ExitError
		}
		req.View = v
	}
	drifts, err := askDoctor(SocketPath(*statePath), req)
	if errors.Is(err, errRefused) {
		fmt.Fprintf(stderr, "mynet doctor: %v; if Docker really has none of them, --fix --force repairs anyway\n", err)
		return ExitRefused
	}
	if err != nil {
		fmt.Fprintf(stderr, "mynet doctor: %v\n", err)
		return ExitError
	}
	code := ExitOK
	for _, d := range drifts {
		if !d.Fixed {
			code = ExitDrift
		}
	}
	if *asJSON {
		writeJSON(stdout, drifts)
		return code
	}
	if len(drifts) == 0 {
		fmt.Fprintln(stdout, "no drift: store, kernel and Docker agree")
		return code
	}
	table := [][]string{{"KIND", "OBJECT", "STATUS", "DETAIL"}}
	fixed := 0
	for _, d := range drifts {
		status := "found"
		switch {
		case d.Fixed:
			status, fixed = "fixed", fixed+1
		case d.Error != "":
			status = "not fixed: " + d.Error
		}
		table = append(table, []string{d.Kind, d.Object, status, d.Detail})
	}
	writeTable(stdout, table)
	fmt.Fprintf(stdout, "%d drift(s), %d fixed", len(drifts), fixed)
	if !*fix && fixed < len(drifts) {
		fmt.Fprint(stdout, ": run with --fix to repair")
	}
	fmt.Fprintln(stdout)
	return code
}

// errRefused: the daemon refused to repair (409), saying why.
var errRefused = errors.New("--fix refused")

// askDoctor posts the request to the daemon, which holds the state and the
// per-network locks the repairs need.
func askDoctor(sock string, req DoctorRequest) ([]drift.Drift, error) {
	resp, err := postJSON(sock, 5*time.Minute, "/v1/doctor", req)
	if err != nil {
		if _, statErr := os.Stat(sock); statErr != nil {
			return nil, fmt.Errorf("no mynet daemon answers on %s: doctor needs the running daemon (start it: at start it also repairs the kernel from the store); is --state right?", sock)
		}
		return nil, fmt.Errorf("admin socket %s: %w", sock, err)
	}
	if resp.StatusCode == http.StatusConflict {
		return nil, fmt.Errorf("%w: %s", errRefused, reason(resp))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("daemon answered %s: %s", resp.Status, reason(resp))
	}
	var out []drift.Drift
	return out, decodeAnswer(resp, &out)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
