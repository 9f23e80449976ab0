// Command mynet is a Docker network driver and IPAM driver. It serves both
// remote plugin protocols on one unix socket and keeps its state in bbolt.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/driver/admin"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/state"
)

// maxBody bounds request bodies: Docker's largest (a CreateEndpoint with a
// long port map) is a few KiB.
const maxBody = 1 << 20

type config struct {
	name, state, socketDir string
	logLevel, logFormat    string
	defaultPools           string
	sysctlRoot             string
	firewallInterval       time.Duration
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("mynet", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mynet [flags]            serve the plugin\n       mynet COMMAND [--state FILE] [--json]\ncommands:\n")
		for _, k := range []string{"networks", "endpoints", "pools", "ports"} {
			fmt.Fprintf(fs.Output(), "  %-10s %s\n", k, admin.Commands[k])
		}
		fmt.Fprintln(fs.Output(), "flags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.name, "name", envOr("MYNET_NAME", "mynet"), "plugin name: socket NAME.sock and the driver name for -d (env MYNET_NAME)")
	fs.StringVar(&c.state, "state", envOr("MYNET_STATE", "/var/lib/mynet/mynet.db"), "state file (env MYNET_STATE)")
	fs.StringVar(&c.socketDir, "socket-dir", envOr("MYNET_SOCKET_DIR", "/run/docker/plugins"), "directory of the plugin socket (env MYNET_SOCKET_DIR)")
	fs.StringVar(&c.logLevel, "log-level", envOr("MYNET_LOG_LEVEL", "info"), "debug, info, warn or error (env MYNET_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", envOr("MYNET_LOG_FORMAT", "text"), "text or json (env MYNET_LOG_FORMAT)")
	fs.StringVar(&c.defaultPools, "default-pools", envOr("MYNET_DEFAULT_POOLS", ipam.DefaultRanges),
		"ranges automatic pools are cut from, BASE/LEN:SIZE comma-separated (env MYNET_DEFAULT_POOLS)")
	fs.StringVar(&c.sysctlRoot, "sysctl-root", envOr("MYNET_SYSCTL_ROOT", "/proc/sys"),
		"where to write sysctls: a managed plugin binds the host's /proc/sys/net read-write elsewhere (env MYNET_SYSCTL_ROOT)")
	fs.DurationVar(&c.firewallInterval, "firewall-check", 5*time.Second, "how often to re-assert firewall jumps that dockerd may have pushed down")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if strings.ContainsAny(c.name, "/ ") || c.name == "" {
		return c, fmt.Errorf("--name %q: give a plain name such as mynet", c.name)
	}
	return c, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func main() {
	if len(os.Args) > 1 {
		if _, ok := admin.Commands[os.Args[1]]; ok {
			os.Exit(admin.Run(os.Args[1:], envOr("MYNET_STATE", "/var/lib/mynet/mynet.db"), os.Stdout, os.Stderr))
		}
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mynet:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mynet:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	log, err := newLogger(cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	ranges, err := ipam.ParseRanges(cfg.defaultPools)
	if err != nil {
		return fmt.Errorf("--default-pools: %w", err)
	}
	store, err := state.Open(cfg.state, state.Options{LockTimeout: time.Second})
	if err != nil {
		return err
	}
	defer store.Close()

	ipamDriver, err := ipam.New(ipam.Config{Store: store, Ranges: ranges, Log: log})
	if err != nil {
		return err
	}
	fw, err := firewall.NewWithConfig(log, firewall.Config{SysctlRoot: cfg.sysctlRoot})
	if err != nil {
		return err
	}
	netDriver, err := driver.New(driver.Config{Store: store, Firewall: fw, Log: log, SysctlRoot: cfg.sysctlRoot})
	if err != nil {
		return err
	}

	sock := filepath.Join(cfg.socketDir, cfg.name+".sock")
	ln, err := admin.Listen(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go netDriver.Run(ctx, cfg.firewallInterval)

	adminSock := admin.SocketPath(cfg.state)
	adminLn, err := admin.Listen(adminSock)
	if err != nil {
		return err
	}
	defer os.Remove(adminSock)
	go func() {
		if err := admin.Serve(ctx, adminLn, func() admin.Snapshot {
			nets, eps := netDriver.Snapshot()
			return admin.Snapshot{Networks: nets, Endpoints: eps, Pools: ipamDriver.Usage()}
		}); err != nil {
			log.Error("admin socket", "err", err)
		}
	}()

	srv := &http.Server{Handler: newMux(log, netDriver, ipamDriver), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "socket", sock, "state", cfg.state, "default_pools", cfg.defaultPools)

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", sock, err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return nil
}

// ---- HTTP plumbing shared by both protocols ----

type mux struct {
	*http.ServeMux
	log *slog.Logger
}

func newMux(log *slog.Logger, nd *driver.Driver, id *ipam.Driver) http.Handler {
	m := &mux{ServeMux: http.NewServeMux(), log: log}
	m.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]string{"Implements": {"NetworkDriver", "IpamDriver"}})
	})

	noBody(m, "/NetworkDriver.GetCapabilities", func() (any, error) { return nd.GetCapabilities(), nil })
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
		start := time.Now()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			m.fail(w, call, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: %w (at most %d bytes)", err, maxBody))
			return
		}
		req := new(Req)
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, req); err != nil {
				m.fail(w, call, body, http.StatusBadRequest, fmt.Errorf("malformed %s request: %v", call, err))
				return
			}
		}
		resp, err := fn(req)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, driver.ErrBadRequest) || errors.Is(err, ipam.ErrBadRequest) {
				status = http.StatusBadRequest
			}
			m.fail(w, call, body, status, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
		m.log.Debug("request", "call", call, "ids", ids(body), "took", time.Since(start))
	})
}

func (m *mux) fail(w http.ResponseWriter, call string, body []byte, status int, err error) {
	msg := strings.TrimPrefix(err.Error(), "bad request: ")
	m.log.Warn("request failed", "call", call, "ids", ids(body), "err", msg)
	writeJSON(w, status, map[string]string{"Err": msg, "Error": msg})
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
