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
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mynet/mynet/admin"
	"github.com/mynet/mynet/cluster"
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
	cluster                clusterConfig
}

// clusterConfig is --cluster and its companions; Endpoints empty: no cluster.
type clusterConfig struct {
	Endpoints     []string
	Advertise     netip.Addr // zero: the source address of the route to the first endpoint
	CA, Cert, Key string
	Sync          time.Duration // how often the IPAM reconciles with etcd
	VXLANPort     int
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
		for _, k := range []string{"networks", "endpoints", "pools", "ports", "doctor", "cluster"} {
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
	clusterList := fs.String("cluster", envOr("MYNET_CLUSTER", ""),
		"join the cluster whose etcd is at etcd://HOST:2379[,HOST:2379...]; off when empty (env MYNET_CLUSTER)")
	advertise := fs.String("advertise", envOr("MYNET_ADVERTISE", ""),
		"this host's address other hosts reach it at (VXLAN traffic); default: the source address of the route to the first etcd endpoint (env MYNET_ADVERTISE)")
	fs.StringVar(&c.cluster.CA, "cluster-ca", envOr("MYNET_CLUSTER_CA", ""), "CA certificate (PEM) etcd's certificate must chain to; turns on TLS (env MYNET_CLUSTER_CA)")
	fs.StringVar(&c.cluster.Cert, "cluster-cert", envOr("MYNET_CLUSTER_CERT", ""), "client certificate (PEM) for etcd; with --cluster-key (env MYNET_CLUSTER_CERT)")
	fs.StringVar(&c.cluster.Key, "cluster-key", envOr("MYNET_CLUSTER_KEY", ""), "client key (PEM) for etcd; with --cluster-cert (env MYNET_CLUSTER_KEY)")
	fs.DurationVar(&c.cluster.Sync, "cluster-sync", time.Minute, "how often to reconcile this host's records with etcd's")
	vxlanPort := fs.String("vxlan-port", envOr("MYNET_VXLAN_PORT", strconv.Itoa(driver.DefaultVXLANPort)), "UDP port of VXLAN traffic between hosts, the same on every host (env MYNET_VXLAN_PORT)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := parseCluster(&c.cluster, *clusterList, *advertise); err != nil {
		return c, err
	}
	if p, err := strconv.Atoi(*vxlanPort); err != nil || p < 1 || p > 65535 {
		return c, fmt.Errorf("--vxlan-port %q: give a UDP port from 1 to 65535 (default %d)", *vxlanPort, driver.DefaultVXLANPort)
	} else {
		c.cluster.VXLANPort = p
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

// parseCluster checks --cluster and its companions; they make no sense alone.
func parseCluster(c *clusterConfig, list, advertise string) error {
	if list == "" {
		for _, f := range [][2]string{{"--advertise", advertise}, {"--cluster-ca", c.CA}, {"--cluster-cert", c.Cert}, {"--cluster-key", c.Key}} {
			if flag, v := f[0], f[1]; v != "" {
				return fmt.Errorf("%s given without --cluster: add --cluster etcd://HOST:2379 (env MYNET_CLUSTER), or drop %s", flag, flag)
			}
		}
		return nil
	}
	eps, err := cluster.ParseEndpoints(list, c.CA != "" || c.Cert != "")
	if err != nil {
		return fmt.Errorf("--cluster: %w", err)
	}
	c.Endpoints = eps
	if advertise != "" {
		a, err := netip.ParseAddr(advertise)
		if err != nil || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return fmt.Errorf("--advertise %q: give this host's unicast address that other hosts reach, e.g. 10.0.0.11", advertise)
		}
		c.Advertise = a.Unmap()
	}
	if c.Sync <= 0 {
		return fmt.Errorf("--cluster-sync %s: give a positive duration such as 1m", c.Sync)
	}
	return nil
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

// openCluster connects to etcd when --cluster is set (nil otherwise) and
// keeps this host registered. etcd down at start is not fatal: running
// containers need nothing from it, and the registration is retried.
func openCluster(ctx context.Context, c clusterConfig, hostID string, log *slog.Logger, observe func(string, time.Duration, error)) (*cluster.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, nil
	}
	tlsConfig, err := cluster.TLSConfig(c.CA, c.Cert, c.Key)
	if err != nil {
		return nil, err
	}
	if !c.Advertise.IsValid() {
		if c.Advertise, err = cluster.RouteSource(c.Endpoints[0]); err != nil {
			return nil, fmt.Errorf("--advertise: %w", err)
		}
	}
	cl, err := cluster.Open(cluster.Config{Endpoints: c.Endpoints, TLS: tlsConfig, HostID: hostID, Advertise: c.Advertise, Log: log, Observe: observe})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, cluster.DefaultTimeout)
	err = cl.Register(rctx)
	cancel()
	if err != nil {
		log.Warn("cluster: etcd does not answer at start; serving from this host's records and retrying", "err", err)
	} else {
		log.Info("cluster: joined", "host", hostID, "advertise", c.Advertise, "etcd", strings.Join(c.Endpoints, ","))
	}
	go cl.Run(ctx)
	return cl, nil
}

// waitSynced waits until the view has listed etcd once, or d passes (etcd
// away: the data plane keeps what the kernel has until etcd answers).
func waitSynced(ctx context.Context, v *cluster.View, d time.Duration) {
	deadline := time.After(d)
	for {
		if synced, _, _, _ := v.Status(); synced {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-v.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cl, err := openCluster(ctx, cfg.cluster, store.InstanceID(), log, mets.ObserveEtcd)
	if err != nil {
		return err
	}
	if cl != nil {
		defer cl.Close()
	}
	ipamDriver, err := ipam.New(ipam.Config{Store: store, Ranges: ranges, Log: log, OnRepair: mets.Repair, Cluster: cl})
	if err != nil {
		return err
	}
	sysctls := link.Sysctls{Root: cfg.sysctlRoot}
	fw, err := firewall.NewWithConfig(log, firewall.Config{Sysctls: sysctls})
	if err != nil {
		return err
	}
	var clusterHooks *driver.Cluster
	if cl != nil {
		clusterHooks = &driver.Cluster{Client: cl, View: cluster.NewView(), NetworkOf: ipamDriver.ClusterNetwork, VXLANPort: cfg.cluster.VXLANPort}
		go cl.Follow(ctx, clusterHooks.View)
	}
	netDriver, err := driver.New(driver.Config{Store: store, Firewall: fw, Log: log, Sysctls: sysctls, OnRepair: mets.Repair, Cluster: clusterHooks})
	if err != nil {
		return err
	}

	sock := filepath.Join(cfg.socketDir, cfg.name+".sock")
	ln, err := server.Listen(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)

	go netDriver.Run(ctx, cfg.firewallInterval)
	if cl != nil {
		// Before serving: etcd learns what this host holds and dropped while
		// it was away. Bounded, so a start with etcd down still serves.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := ipamDriver.ReconcileCluster(rctx, ipam.ClaimGrace); err != nil {
			log.Warn("cluster: reconcile at start incomplete; it runs again every --cluster-sync", "err", err)
		}
		cancel()
		go ipamDriver.RunCluster(ctx, cfg.cluster.Sync)
		// The data plane from etcd's endpoints, before serving: containers
		// restarted with the daemon reach the other hosts at once.
		waitSynced(ctx, clusterHooks.View, 5*time.Second)
		netDriver.SyncDataPlane()
		rctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		netDriver.ReconcileEndpoints(rctx, time.Minute)
		cancel()
		go netDriver.RunCluster(ctx, cfg.cluster.Sync)
	}

	adminSock := admin.SocketPath(cfg.state)
	adminLn, err := server.Listen(adminSock)
	if err != nil {
		return err
	}
	defer os.Remove(adminSock)
	var clusterAdmin *admin.ClusterHandlers
	if cl != nil {
		clusterAdmin = &admin.ClusterHandlers{Hosts: cl.Hosts, Forget: cl.Forget}
	}
	go func() {
		if err := admin.Serve(ctx, adminLn, admin.Handlers{
			Cluster: clusterAdmin,
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
				cctx, cancel := context.WithTimeout(ctx, time.Minute)
				ipamDriver.ClusterDrift(cctx, grace, r.Fix, func(d drift.Drift) { drifts = append(drifts, d) })
				cancel()
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
