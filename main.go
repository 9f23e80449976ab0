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
	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/driver/ports"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/metrics"
	"github.com/mynet/mynet/reconcile"
	"github.com/mynet/mynet/server"
	"github.com/mynet/mynet/state"
)

// dockerCallTimeout bounds each call the background reconcile makes to
// Docker: it never holds a lock, but a hung dockerd should cost a run
// seconds, not minutes.
const dockerCallTimeout = 5 * time.Second

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
	store, err := state.Open(cfg.state, state.Options{LockTimeout: time.Second})
	if err != nil {
		return err
	}
	defer store.Close()

	mets := metrics.New()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cl, joined, err := openCluster(ctx, cfg.cluster, store.InstanceID(), log, mets.ObserveEtcd)
	if err != nil {
		return err
	}
	if cl != nil {
		defer cl.Close()
	}
	ipamDriver, err := ipam.New(ipam.Config{Store: store, Ranges: cfg.ranges, Log: log, OnRepair: mets.Repair, Cluster: cl})
	if err != nil {
		return err
	}
	sysctls := link.Sysctls{Root: cfg.sysctlRoot}
	fw, err := firewall.NewWithConfig(log, firewall.Config{Sysctls: sysctls, Owner: store.InstanceID()})
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
	defer netDriver.Close() // links still being deleted go before the store closes

	sock := filepath.Join(cfg.socketDir, cfg.name+".sock")
	ln, err := server.Listen(sock)
	if err != nil {
		return fmt.Errorf("plugin socket (--name, --socket-dir): %w", err)
	}
	defer ln.Close() // removes the socket while it is still ours

	go netDriver.Run(ctx, cfg.firewallInterval)
	if cl != nil {
		startCluster(ctx, cfg.cluster, joined, ipamDriver, netDriver, clusterHooks.View, log)
	}

	repairer := reconcile.NewRepairer(netDriver, ipamDriver, log)
	adminSock := admin.SocketPath(cfg.state)
	adminLn, err := server.Listen(adminSock)
	if err != nil {
		return fmt.Errorf("admin socket (next to --state): %w", err)
	}
	defer adminLn.Close()
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
			Doctor: func(r admin.DoctorRequest, grace time.Duration) ([]drift.Drift, error) {
				run := reconcile.Run{View: r.View, HasView: r.HasView, Grace: grace, Force: r.Force, By: "doctor"}
				if r.Fix {
					run.Fix = drift.FixAll
				}
				return repairer.Do(run)
			},
		}); err != nil {
			log.Error("admin socket", "err", err)
		}
	}()

	if cfg.metrics != (metrics.Addr{}) {
		mets.Track(ipamDriver.Usage, netDriver.Snapshot)
		mets.TrackProxy(func() metrics.ProxyCounts {
			p := &ports.Proxied
			return metrics.ProxyCounts{TCPConns: p.TCPConns.Load(), TCPFailed: p.TCPFailed.Load(),
				UDPFlows: p.UDPFlows.Load(), UDPDropped: p.UDPDropped.Load(), Open: p.ActiveConns.Load()}
		})
		metricsLn, err := metrics.Listen(cfg.metrics, log)
		if err != nil {
			return err
		}
		defer metricsLn.Close()
		go func() {
			if err := metrics.Serve(ctx, metricsLn, mets); err != nil {
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

	// Docker is asked only from here on: dockerd waits for its plugins at
	// boot, so a plugin that waited for dockerd first would deadlock it.
	switch cfg.asyncTeardown {
	case "on":
		netDriver.SetAsyncTeardown(true)
	case "auto":
		go followEngine(ctx, cfg.dockerSocket, netDriver.SetAsyncTeardown, log)
	}
	reconciled := make(chan struct{})
	if cfg.reconcileEvery > 0 {
		loop := &reconcile.Loop{Repairer: repairer, Every: cfg.reconcileEvery, Grace: cfg.reconcileGrace, Log: log, OnRun: mets.ReconcileRun,
			View: func(ctx context.Context) (drift.View, error) {
				return drift.Fetch(ctx, cfg.dockerSocket, dockerCallTimeout)
			}}
		go func() {
			defer close(reconciled)
			loop.Run(ctx)
		}()
		log.Info("background reconcile with Docker's view", "every", cfg.reconcileEvery, "grace", cfg.reconcileGrace, "docker", cfg.dockerSocket)
	} else {
		close(reconciled)
	}

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
	<-reconciled // a repair in progress ends before the store closes
	return nil
}

// openCluster connects to etcd when --cluster is set (nil otherwise) and
// keeps this host registered; joined says whether etcd answered at start.
// etcd down at start is not fatal: running containers need nothing from it,
// and the registration is retried.
func openCluster(ctx context.Context, c clusterConfig, hostID string, log *slog.Logger, observe func(string, time.Duration, error)) (cl *cluster.Client, joined bool, err error) {
	if len(c.Endpoints) == 0 {
		return nil, false, nil
	}
	tlsConfig, err := cluster.TLSConfig(c.CA, c.Cert, c.Key)
	if err != nil {
		return nil, false, err
	}
	if !c.Advertise.IsValid() {
		if c.Advertise, err = cluster.RouteSource(c.Endpoints[0]); err != nil {
			return nil, false, fmt.Errorf("--advertise: %w", err)
		}
	}
	cl, err = cluster.Open(cluster.Config{Endpoints: c.Endpoints, TLS: tlsConfig, HostID: hostID, Advertise: c.Advertise, Log: log, Observe: observe})
	if err != nil {
		return nil, false, err
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
	return cl, err == nil, nil
}

// startCluster brings etcd in line with this host before the socket opens:
// the IPAM's records (what this host holds and dropped while it was away)
// and the data plane (the other hosts' endpoints), each bounded so that a
// start with etcd down still serves; then keeps both reconciled. When etcd
// did not answer the registration (joined false) it does not wait for it
// again: three more timeouts would hold the socket back for some 15 s, close
// to how long dockerd waits for a plugin, and the loops started here do the
// same work once etcd answers.
func startCluster(ctx context.Context, c clusterConfig, joined bool, ipamDriver *ipam.Driver, netDriver *driver.Driver, view *cluster.View, log *slog.Logger) {
	if joined {
		reconcileWithEtcd(ctx, ipamDriver, netDriver, view, log)
	} else {
		log.Warn("cluster: start-up reconcile with etcd left to the loops (every --cluster-sync) until etcd answers")
		netDriver.SyncDataPlane()
	}
	go ipamDriver.RunCluster(ctx, c.Sync)
	go netDriver.RunCluster(ctx, c.Sync)
}

// reconcileWithEtcd is the start-up reconcile: the IPAM's records with
// etcd's, then the data plane with the view once it has listed etcd.
func reconcileWithEtcd(ctx context.Context, ipamDriver *ipam.Driver, netDriver *driver.Driver, view *cluster.View, log *slog.Logger) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := ipamDriver.ReconcileCluster(rctx, ipam.ClaimGrace); err != nil {
		log.Warn("cluster: reconcile at start incomplete; it runs again every --cluster-sync", "err", err)
	}
	cancel()
	waitSynced(ctx, view, 5*time.Second)
	netDriver.SyncDataPlane()
	rctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	netDriver.ReconcileEndpoints(rctx, time.Minute)
	cancel()
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
