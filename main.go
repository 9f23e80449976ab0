// Command mynet is a Docker network driver and IPAM driver. It serves both
// remote plugin protocols on one unix socket and keeps its state in bbolt.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mynet/mynet/admin"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/metrics"
	"github.com/mynet/mynet/server"
	"github.com/mynet/mynet/state"
	"github.com/mynet/mynet/timing"
)

type config struct {
	name, state, socketDir string
	logLevel, logFormat    string
	defaultPools           string
	sysctlRoot             string
	firewallInterval       time.Duration
	metrics                metrics.Addr // zero: no metrics listener
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
		for _, k := range []string{"networks", "endpoints", "pools", "ports", "doctor"} {
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
	metricsAddr := fs.String("metrics", envOr("MYNET_METRICS", ""),
		"serve Prometheus /metrics on unix:/path.sock or host:port; off when empty (env MYNET_METRICS)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *metricsAddr != "" {
		a, err := metrics.ParseAddr(*metricsAddr)
		if err != nil {
			return c, err
		}
		c.metrics = a
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

	mets := metrics.New()
	ipamDriver, err := ipam.New(ipam.Config{Store: store, Ranges: ranges, Log: log, OnRepair: mets.Repair})
	if err != nil {
		return err
	}
	sysctls := link.Sysctls{Root: cfg.sysctlRoot}
	fw, err := firewall.NewWithConfig(log, firewall.Config{Sysctls: sysctls})
	if err != nil {
		return err
	}
	netDriver, err := driver.New(driver.Config{Store: store, Firewall: fw, Log: log, Sysctls: sysctls, OnRepair: mets.Repair})
	if err != nil {
		return err
	}

	sock := filepath.Join(cfg.socketDir, cfg.name+".sock")
	ln, err := server.Listen(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go netDriver.Run(ctx, cfg.firewallInterval)

	adminSock := admin.SocketPath(cfg.state)
	adminLn, err := server.Listen(adminSock)
	if err != nil {
		return err
	}
	defer os.Remove(adminSock)
	go func() {
		if err := admin.Serve(ctx, adminLn, admin.Handlers{
			Snapshot: func() admin.Snapshot {
				nets, eps := netDriver.Snapshot()
				return admin.Snapshot{Networks: nets, Endpoints: eps, Pools: ipamDriver.Usage()}
			},
			Doctor: func(r admin.DoctorRequest, grace time.Duration) []drift.Drift {
				span := timing.Begin() // its kernel and bbolt work is no request's
				defer span.End()
				drifts := netDriver.Doctor(r.View, r.HasView, r.Fix, grace)
				if r.HasView {
					drifts = append(drifts, ipamDriver.Doctor(r.View, r.Fix, grace)...)
				}
				for _, d := range drifts {
					log.Info("doctor", "kind", d.Kind, "object", d.Object, "fixed", d.Fixed, "err", d.Error)
				}
				return drifts
			},
		}); err != nil {
			log.Error("admin socket", "err", err)
		}
	}()

	if cfg.metrics != (metrics.Addr{}) {
		mets.Track(ipamDriver.Usage, netDriver.Snapshot)
		metricsLn, err := metrics.Listen(cfg.metrics, log)
		if err != nil {
			return err
		}
		if cfg.metrics.Path != "" {
			defer os.Remove(cfg.metrics.Path)
		}
		go func() {
			if err := metrics.Serve(ctx, metricsLn, cfg.metrics, mets); err != nil {
				log.Error("metrics", "err", err)
			}
		}()
		log.Info("metrics", "addr", cfg.metrics.String())
	}

	handler := server.NewWithConfig(server.Config{Log: log, Network: netDriver, IPAM: ipamDriver, Observe: mets.ObserveRequest})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
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
