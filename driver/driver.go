// Package driver is mynet's network driver: the NetworkDriver protocol's
// calls turned into bridges, veth pairs, firewall rules and published ports,
// each recorded in the store so a restart can rebuild them.
package driver

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/driver/ports"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// Config wires a Driver.
type Config struct {
	Store    *state.Store
	Firewall *firewall.Firewall
	Log      *slog.Logger
	// Sysctls is where sysctls are written (the firewall's, too).
	Sysctls link.Sysctls
	// OnRepair, when set, is told of each repair (start-up restore, the
	// periodic firewall check, mynet doctor --fix) by its drift kind.
	OnRepair func(kind string)
	// Cluster, when set, makes networks on cluster pools cluster networks
	// and enables the vxlan backend; nil: this host only.
	Cluster *Cluster
}

// Driver serves the NetworkDriver protocol.
type Driver struct {
	store    *state.Store
	owner    string // alias that marks our links: mynet:<state file instance id>
	sysctls  link.Sysctls
	fw       *firewall.Firewall
	ports    *ports.Reserver
	log      *slog.Logger
	onRepair func(kind string)
	cluster  *Cluster
	// reaper deletes veths and bridges in the background once they are out
	// of reach, when asyncTeardown is on (see SetAsyncTeardown).
	reaper        *link.Reaper
	asyncTeardown atomic.Bool

	createMu  sync.Mutex // one CreateNetwork at a time
	mu        sync.Mutex // guards the maps; never held across kernel calls
	networks  map[string]*netEntry
	endpoints map[string]*state.Endpoint
	// locks serialise each network's kernel work. An entry lives only while
	// a call holds or waits for it, so ids that name no network (a hostile
	// client's) and deleted networks leave nothing behind.
	locks map[string]*netLockEntry
	// waiting: networks a rebuild could not set up (a link of the user's
	// not back yet, a parent gone), by id, with the error; each periodic
	// check tries them again.
	waiting map[string]string
}

type netLockEntry struct {
	mu    sync.Mutex
	users int // calls holding or waiting for mu; guarded by Driver.mu
}

type netEntry struct {
	rec state.Network
}

// New loads every network and endpoint from the store and rebuilds in the
// kernel whatever is missing (after a host reboot, or bridges and chains
// deleted by hand), before the caller opens the socket.
func New(cfg Config) (*Driver, error) {
	d := &Driver{
		store: cfg.Store, owner: "mynet:" + cfg.Store.InstanceID(), sysctls: cfg.Sysctls, fw: cfg.Firewall, ports: ports.NewReserver(), log: cfg.Log, onRepair: cfg.OnRepair, cluster: cfg.Cluster,
		networks: map[string]*netEntry{}, endpoints: map[string]*state.Endpoint{}, locks: map[string]*netLockEntry{}, waiting: map[string]string{},
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	reaper, err := link.NewReaper(func(names []string, err error) {
		// The link stays until the next start's orphan search removes it.
		d.log.Error("delete links in the background", "links", names, "err", err)
	})
	if err != nil {
		return nil, err
	}
	d.reaper = reaper
	if err := d.restore(); err != nil {
		reaper.Close()
		return nil, err
	}
	// The restore's link dump and parsed iptables-save are garbage now (tens
	// of MiB with thousands of endpoints): give the pages back at once rather
	// than holding them until the scavenger gets round to it.
	debug.FreeOSMemory()
	return d, nil
}

// SetAsyncTeardown turns background teardown on or off. When on,
// DeleteEndpoint answers once the endpoint's record, ports and tracked flows
// are gone and hands its veth to the reaper; DeleteNetwork takes its bridge
// down and does the same. The kernel's tens of milliseconds per link are then
// spent off Docker's critical path. A crash before the reaper is done leaves
// marked links no record claims, which the next start removes; a call that
// needs a name back waits for its old link to go.
func (d *Driver) SetAsyncTeardown(on bool) { d.asyncTeardown.Store(on) }

// Close waits for the links being deleted in the background.
func (d *Driver) Close() { d.reaper.Close() }

// netLock serialises work on one network; other networks go on in parallel.
func (d *Driver) netLock(id string) func() {
	d.mu.Lock()
	l, ok := d.locks[id]
	if !ok {
		l = &netLockEntry{}
		d.locks[id] = l
	}
	l.users++
	d.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		d.mu.Lock()
		if l.users--; l.users == 0 {
			delete(d.locks, id)
		}
		d.mu.Unlock()
	}
}

func (d *Driver) lookupNetwork(id string) (*netEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.networks[id]
	return n, ok
}

func (d *Driver) lookupEndpoint(id string) (*state.Endpoint, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.endpoints[id]
	if !ok {
		return nil, false
	}
	c := *e
	return &c, true
}

// Capabilities is NetworkDriver.GetCapabilities' answer.
type Capabilities struct {
	Scope             string
	ConnectivityScope string
	GwAllocChecker    bool
}

// GetCapabilities: Docker keeps the network on this host (scope local);
// with --cluster its connectivity spans hosts. Scope global would need
// swarm or Docker's old cluster store. GwAllocCheck is answered.
func (d *Driver) GetCapabilities() Capabilities {
	if d != nil && d.cluster != nil {
		return Capabilities{Scope: "local", ConnectivityScope: "global", GwAllocChecker: true}
	}
	return Capabilities{Scope: "local", ConnectivityScope: "local", GwAllocChecker: true}
}

// GwAllocCheckRequest and GwAllocCheckResponse are Docker 28's question,
// before CreateNetwork, whether to reserve gateway addresses (older engines
// never ask, and reserve them).
type GwAllocCheckRequest struct {
	Options map[string]any
}

type GwAllocCheckResponse struct {
	SkipIPv4, SkipIPv6 bool
}

// GwAllocCheck: no gateway for a family in gateway mode isolated, nor for
// IPv4 on an internal network with inhibit_ipv4 (as Docker's bridge). Bad
// options fail here already, with CreateNetwork's message.
func (d *Driver) GwAllocCheck(req *GwAllocCheckRequest) (*GwAllocCheckResponse, error) {
	cfg, err := parseNetworkOptions(req.Options)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	return &GwAllocCheckResponse{
		SkipIPv4: cfg.GwModeV4 == gwIsolated || (cfg.InhibitIPv4 && cfg.Internal),
		SkipIPv6: cfg.GwModeV6 == gwIsolated,
	}, nil
}

// mark records that this instance made a link; failures only cost cleanup.
func (d *Driver) mark(names ...string) {
	for _, n := range names {
		if n != "" {
			if err := link.SetAlias(n, d.owner); err != nil {
				d.log.Warn("mark link", "link", n, "err", err)
			}
		}
	}
}

// Snapshot copies every network and endpoint record, for inspection.
func (d *Driver) Snapshot() ([]state.Network, []state.Endpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	nets := make([]state.Network, 0, len(d.networks))
	for _, n := range d.networks {
		nets = append(nets, n.rec)
	}
	eps := make([]state.Endpoint, 0, len(d.endpoints))
	for _, e := range d.endpoints {
		eps = append(eps, *e)
	}
	return nets, eps
}
