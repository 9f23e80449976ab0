// Command mynet is a Docker network driver and IPAM driver. It serves both
// remote plugin protocols on one unix socket and keeps its state in bbolt.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mynet/mynet/admin"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
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
	ipamDriver, err := ipam.New(ipam.Config{Store: store, Ranges: cfg.ranges, Log: log, OnRepair: mets.Repair})
	if err != nil {
		return err
	}
	sysctls := link.Sysctls{Root: cfg.sysctlRoot}
	fw, err := firewall.NewWithConfig(log, firewall.Config{Sysctls: sysctls, Owner: store.InstanceID()})
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
		return fmt.Errorf("plugin socket (--name, --socket-dir): %w", err)
	}
	defer ln.Close() // removes the socket while it is still ours

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go netDriver.Run(ctx, cfg.firewallInterval)

	repairer := reconcile.NewRepairer(netDriver, ipamDriver, log)
	adminSock := admin.SocketPath(cfg.state)
	adminLn, err := server.Listen(adminSock)
	if err != nil {
		return fmt.Errorf("admin socket (next to --state): %w", err)
	}
	defer adminLn.Close()
	go func() {
		if err := admin.Serve(ctx, adminLn, admin.Handlers{
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
