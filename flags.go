package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mynet/mynet/admin"
	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/metrics"
)

type config struct {
	name, state, socketDir string
	logLevel, logFormat    string
	defaultPools           string
	ranges                 []ipam.Range
	sysctlRoot             string
	firewallInterval       time.Duration
	metrics                metrics.Addr  // zero: no metrics listener
	reconcileEvery         time.Duration // 0: no background reconcile
	reconcileGrace         time.Duration
	dockerSocket           string // Docker API socket path, for the reconcile and --async-teardown auto
	asyncTeardown          string // auto, on or off
	cluster                clusterConfig
}

// clusterConfig is --cluster and its companions; Endpoints empty: no cluster.
type clusterConfig struct {
	Endpoints     []string
	Advertise     netip.Addr // zero: the source address of the route to the first endpoint
	CA, Cert, Key string
	Sync          time.Duration // how often this host's records are reconciled with etcd's
	VXLANPort     int
}

// The periodic firewall check: often enough to catch dockerd pushing our
// jumps down soon, never so often that it is a busy loop (time.NewTicker
// panics at zero).
const (
	minFirewallCheck   = time.Second
	maxFirewallCheck   = 24 * time.Hour
	firewallCheckRange = "a duration from 1s to 24h"
)

// maxSocketPath is the longest unix socket path Linux binds (sun_path less its NUL).
const maxSocketPath = 107

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// parseFlags reads and checks every flag, so that a bad value stops the
// start (exit code 2) before anything is opened, with a message naming the
// flag (and its environment variable when the value came from there) and
// what would be valid.
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
	env := map[string]string{} // flag name -> its environment twin
	str := func(p *string, name, envKey, def, usage string) {
		if envKey != "" {
			env[name] = envKey
			def = envOr(envKey, def)
			usage += " (env " + envKey + ")"
		}
		fs.StringVar(p, name, def, usage)
	}
	str(&c.name, "name", "MYNET_NAME", "mynet", "plugin name: socket NAME.sock and the driver name for -d")
	str(&c.state, "state", "MYNET_STATE", "/var/lib/mynet/mynet.db", "state file")
	str(&c.socketDir, "socket-dir", "MYNET_SOCKET_DIR", "/run/docker/plugins", "directory of the plugin socket")
	str(&c.logLevel, "log-level", "MYNET_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.logFormat, "log-format", "MYNET_LOG_FORMAT", "text", "text or json")
	str(&c.defaultPools, "default-pools", "MYNET_DEFAULT_POOLS", ipam.DefaultRanges,
		"ranges automatic pools are cut from, BASE/LEN:SIZE comma-separated")
	str(&c.sysctlRoot, "sysctl-root", "MYNET_SYSCTL_ROOT", "/proc/sys",
		"where to write sysctls: a managed plugin binds the host's /proc/sys/net read-write elsewhere")
	var firewallCheck, metricsAddr string
	str(&firewallCheck, "firewall-check", "", "5s",
		"how often to re-assert firewall jumps that dockerd may have pushed down: "+firewallCheckRange)
	str(&metricsAddr, "metrics", "MYNET_METRICS", "", "serve Prometheus /metrics on unix:/path.sock or host:port; off when empty")
	var every, grace, dockerHost string
	str(&every, "reconcile-every", "MYNET_RECONCILE_EVERY", "5m",
		"how often to compare with Docker's view and repair what Docker forgot; 0 turns it off")
	str(&grace, "reconcile-grace", "MYNET_RECONCILE_GRACE", "2m",
		"the reconcile leaves records younger than this alone: Docker may be about to use them")
	str(&dockerHost, "docker-host", "DOCKER_HOST", "unix:///var/run/docker.sock",
		"Docker API socket the reconcile reads Docker's view from")
	str(&c.asyncTeardown, "async-teardown", "MYNET_ASYNC_TEARDOWN", "auto",
		"delete veths and bridges in the background after answering: on, off, or auto (on while Docker's API is "+asyncTeardownAPI+" or later, Docker 28.1+)")
	var clusterList, advertise, vxlanPort, clusterSync string
	str(&clusterList, "cluster", "MYNET_CLUSTER", "", "join the cluster whose etcd is at etcd://HOST:2379[,HOST:2379...]; off when empty")
	str(&advertise, "advertise", "MYNET_ADVERTISE", "",
		"with --cluster: this host's address other hosts reach it at (VXLAN); default: the source address of the route to the first etcd endpoint")
	str(&c.cluster.CA, "cluster-ca", "MYNET_CLUSTER_CA", "", "CA certificate (PEM) etcd's certificate must chain to; turns on TLS")
	str(&c.cluster.Cert, "cluster-cert", "MYNET_CLUSTER_CERT", "", "client certificate (PEM) for etcd; with --cluster-key")
	str(&c.cluster.Key, "cluster-key", "MYNET_CLUSTER_KEY", "", "client key (PEM) for etcd; with --cluster-cert")
	str(&vxlanPort, "vxlan-port", "MYNET_VXLAN_PORT", "4789", "UDP port of VXLAN traffic between hosts, the same on every host")
	str(&clusterSync, "cluster-sync", "", "1m", "with --cluster: how often this host's records are reconciled with etcd's")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	err := c.check(firewallCheck, metricsAddr)
	if err == nil {
		err = c.checkReconcile(every, grace, dockerHost)
	}
	if err == nil {
		err = c.cluster.check(clusterList, advertise, vxlanPort, clusterSync)
	}
	if err != nil {
		// Name the variable too when the value came from the environment.
		if fe, ok := err.(*flagError); ok && !set[fe.flag] && env[fe.flag] != "" && os.Getenv(env[fe.flag]) != "" {
			return c, fmt.Errorf("%w (from %s)", err, env[fe.flag])
		}
		return c, err
	}
	return c, nil
}

// flagError is a bad value; its message begins with --flag.
type flagError struct {
	flag string
	err  error
}

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

func badFlag(flag, format string, args ...any) error {
	return &flagError{flag: flag, err: fmt.Errorf("--"+flag+" "+format, args...)}
}

// check validates every value and fills the parsed fields. Each error
// begins with the flag it is about.
func (c *config) check(firewallCheck, metricsAddr string) error {
	if !plainName(c.name) {
		return badFlag("name", "%q: give a plain name such as mynet (no '/', spaces or control characters, not . or ..)", c.name)
	}
	if c.socketDir == "" {
		return badFlag("socket-dir", "%q: give the directory of the plugin socket, e.g. /run/docker/plugins", c.socketDir)
	}
	if sock := c.pluginSocket(); len(sock) > maxSocketPath {
		return badFlag("name", "%q: the plugin socket %s is %d bytes long; a unix socket path is at most %d bytes: use a shorter --name or --socket-dir", c.name, sock, len(sock), maxSocketPath)
	}
	if c.state == "" || strings.HasSuffix(c.state, "/") {
		return badFlag("state", "%q: give the path of a file, e.g. /var/lib/mynet/mynet.db", c.state)
	}
	if sock := admin.SocketPath(c.state); len(sock) > maxSocketPath {
		return badFlag("state", "%q: its admin socket %s is %d bytes long; a unix socket path is at most %d bytes: use a shorter path", c.state, sock, len(sock), maxSocketPath)
	}
	if _, err := newLogger(c.logLevel, c.logFormat); err != nil {
		return err
	}
	ranges, err := ipam.ParseRanges(c.defaultPools)
	if err != nil {
		return &flagError{flag: "default-pools", err: fmt.Errorf("--default-pools: %w", err)}
	}
	c.ranges = ranges
	if st, err := os.Stat(c.sysctlRoot); !filepath.IsAbs(c.sysctlRoot) || err != nil || !st.IsDir() {
		return badFlag("sysctl-root", "%q: give the absolute path of a directory that holds net/ (default /proc/sys)", c.sysctlRoot)
	}
	d, err := time.ParseDuration(firewallCheck)
	if err != nil || d < minFirewallCheck || d > maxFirewallCheck {
		return badFlag("firewall-check", "%q: out of range; valid: %s, e.g. 5s", firewallCheck, firewallCheckRange)
	}
	c.firewallInterval = d
	if metricsAddr != "" {
		a, err := metrics.ParseAddr(metricsAddr)
		if err != nil {
			return &flagError{flag: "metrics", err: err}
		}
		if err := c.checkMetricsPath(a.Path); err != nil {
			return err
		}
		c.metrics = a
	}
	return nil
}

// checkReconcile reads the background reconcile's flags: an interval of 0
// (off) or 1s to 24h, a grace of 0 to 24h, and a Docker socket when it runs.
func (c *config) checkReconcile(every, grace, dockerHost string) error {
	d, err := time.ParseDuration(every)
	if err != nil || d != 0 && (d < time.Second || d > 24*time.Hour) {
		return badFlag("reconcile-every", "%q: give 0 (off) or a duration from 1s to 24h such as 5m", every)
	}
	c.reconcileEvery = d
	if d, err = time.ParseDuration(grace); err != nil || d < 0 || d > 24*time.Hour {
		return badFlag("reconcile-grace", "%q: give a duration from 0 to 24h such as 2m", grace)
	}
	c.reconcileGrace = d
	if c.reconcileEvery > 0 {
		if c.dockerSocket, err = drift.ParseDockerHost(dockerHost); err != nil {
			return badFlag("docker-host", "%v, or turn the background reconcile off with --reconcile-every 0", err)
		}
	}
	switch c.asyncTeardown {
	case "on", "off":
	case "auto":
		if c.dockerSocket == "" {
			// Not a unix socket: auto cannot ask Docker, and stays off.
			c.dockerSocket, _ = drift.ParseDockerHost(dockerHost)
		}
	default:
		return badFlag("async-teardown", "%q: give auto, on or off", c.asyncTeardown)
	}
	return nil
}

// check reads --cluster and its companions, which make no sense alone.
func (c *clusterConfig) check(list, advertise, vxlanPort, sync string) error {
	p, err := strconv.Atoi(vxlanPort)
	if err != nil || p < 1 || p > 65535 {
		return badFlag("vxlan-port", "%q: give a UDP port from 1 to 65535 (default 4789)", vxlanPort)
	}
	c.VXLANPort = p
	if c.Sync, err = time.ParseDuration(sync); err != nil || c.Sync < time.Second || c.Sync > 24*time.Hour {
		return badFlag("cluster-sync", "%q: give a duration from 1s to 24h such as 1m", sync)
	}
	if list == "" {
		for _, f := range [][2]string{{"advertise", advertise}, {"cluster-ca", c.CA}, {"cluster-cert", c.Cert}, {"cluster-key", c.Key}} {
			if f[1] != "" {
				return badFlag(f[0], "given without --cluster: add --cluster etcd://HOST:2379 (env MYNET_CLUSTER), or drop --%s", f[0])
			}
		}
		return nil
	}
	if c.Endpoints, err = cluster.ParseEndpoints(list, c.CA != "" || c.Cert != ""); err != nil {
		return &flagError{flag: "cluster", err: fmt.Errorf("--cluster: %w", err)}
	}
	if advertise != "" {
		a, err := netip.ParseAddr(advertise)
		if err != nil || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return badFlag("advertise", "%q: give this host's unicast address that other hosts reach, e.g. 10.0.0.11", advertise)
		}
		c.Advertise = a.Unmap()
	}
	return nil
}

// checkMetricsPath refuses a metrics socket on a path mynet already uses.
func (c *config) checkMetricsPath(p string) error {
	if p == "" {
		return nil
	}
	p = filepath.Clean(p)
	for _, taken := range []struct{ path, what string }{
		{c.state, "the state file"},
		{admin.SocketPath(c.state), "the admin socket"},
		{c.pluginSocket(), "the plugin socket"},
	} {
		if abs, err := filepath.Abs(taken.path); err == nil && abs == p {
			return badFlag("metrics", "unix:%s: that is %s; give a path of its own, e.g. unix:/run/mynet/metrics.sock", p, taken.what)
		}
	}
	if len(p) > maxSocketPath {
		return badFlag("metrics", "unix:%s: %d bytes long; a unix socket path is at most %d bytes", p, len(p), maxSocketPath)
	}
	return nil
}

func (c *config) pluginSocket() string { return filepath.Join(c.socketDir, c.name+".sock") }

func plainName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, badFlag("log-level", "%q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, badFlag("log-format", "%q: use text or json", format)
}
