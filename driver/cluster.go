package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"time"

	"github.com/mynet/mynet/cluster"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/internal/periodic"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
	"github.com/mynet/mynet/timing"
)

// Cluster is what the driver needs of --cluster.
type Cluster struct {
	Client *cluster.Client
	// View is kept up to date by Client.Follow: every endpoint of every
	// cluster network, which the VXLAN devices are programmed from.
	View *cluster.View
	// NetworkOf names the cluster network whose pool on this host is a
	// subnet (the IPAM's ClusterNetwork): CreateNetwork sees only the subnet.
	NetworkOf func(netip.Prefix) (string, bool)
	// VXLANPort is the UDP port of every VXLAN device; DefaultVXLANPort if 0.
	VXLANPort int
}

// clusterOp bounds one call's work in etcd (the client's timeout bounds each
// round trip).
const clusterOp = 30 * time.Second

// endpointGrace: a record of this host in etcd younger than this is left
// alone by the reconcile even when no endpoint here has it (CreateEndpoint
// publishes before it records).
const endpointGrace = time.Minute

// optClusterIPv6 marks, in a cluster network's definition, that its hosts'
// networks have IPv6: a host without --ipv6 would leave its containers
// without the addresses the others reach them at.
const optClusterIPv6 = "ipv6"

// clusterOptions is what every host of a cluster network must agree on,
// from the derived values (so "1" and "true" agree). Names of links (bridge,
// parent) and the host binding may differ from host to host.
func clusterOptions(cfg netConfig, rec state.Network) map[string]string {
	out := map[string]string{optInternal: strconv.FormatBool(rec.Internal)}
	if len(rec.IPv6) > 0 {
		// Only when set: networks defined before IPv6 cluster pools lack it.
		out[optClusterIPv6] = "true"
	}
	if cfg.MTU > 0 {
		out[optMTU] = strconv.Itoa(cfg.MTU)
	}
	switch {
	case bridged(rec):
		out[optICC] = strconv.FormatBool(rec.ICC)
		out[optMasquerade] = strconv.FormatBool(rec.Masquerade)
	case rec.Backend == backendMacvlan:
		out[optMacvlanMode] = rec.Mode
	case rec.Backend == backendIPvlan:
		out[optIPvlanMode], out[optIPvlanFlag] = rec.Mode, rec.Flag
	}
	return out
}

// clusterFields fills in what a new network's record takes from the
// cluster without asking etcd: which cluster network its pool belongs to,
// and for vxlan this host's VTEP, the port and the MTU (the underlay's minus
// VXLAN's overhead, unless given). A vxlan network must be a cluster one.
func (d *Driver) clusterFields(rec *state.Network) error {
	if d.cluster != nil {
		for _, subnets := range [][]state.Subnet{rec.IPv4, rec.IPv6} {
			if len(subnets) == 1 && rec.Cluster == "" {
				rec.Cluster, _ = d.cluster.NetworkOf(subnets[0].Pool)
			}
		}
	}
	if rec.Backend != backendVXLAN {
		return nil
	}
	if rec.Cluster == "" {
		how := "create it with --ipam-driver set to this plugin and --ipam-opt network=NAME"
		if d.cluster == nil {
			how = "start mynet with --cluster etcd://HOST:2379, then " + how
		}
		return protocol.BadRequest("backend vxlan spans hosts and needs a cluster-wide pool, or addresses would clash between hosts: %s", how)
	}
	rec.VTEP, rec.VXLANPort = d.cluster.Client.Advertise(), d.vxlanPort()
	if rec.MTU == 0 {
		mtu, dev, err := link.AddrMTU(rec.VTEP)
		if err != nil {
			return fmt.Errorf("MTU for the VXLAN network: %w (is --advertise an address of this host?)", err)
		}
		if rec.MTU = mtu - vxlanOverhead; rec.MTU < 68 {
			return protocol.BadRequest("the underlay %s has MTU %d, too small for VXLAN's %d bytes of overhead", dev, mtu, vxlanOverhead)
		}
	}
	return nil
}

// defineInCluster defines the network's backend and options in etcd (the
// first host) or checks them against the definition (later hosts), and takes
// the VNI from it.
func (d *Driver) defineInCluster(rec *state.Network, cfg netConfig) error {
	if rec.Cluster == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
	defer cancel()
	n, err := d.cluster.Client.Define(ctx, rec.Cluster, cluster.Driver{Backend: rec.Backend, Options: clusterOptions(cfg, *rec)}, rec.ID)
	if err != nil {
		if errors.Is(err, cluster.ErrConflict) || errors.Is(err, cluster.ErrInvalid) || errors.Is(err, cluster.ErrNoNetwork) {
			return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
		}
		return err
	}
	if rec.Backend == backendVXLAN {
		rec.VNI = n.VNI
	}
	return nil
}

func (d *Driver) vxlanPort() int {
	if d.cluster != nil && d.cluster.VXLANPort != 0 {
		return d.cluster.VXLANPort
	}
	return DefaultVXLANPort
}

// clusterAddrs are the addresses of ep that other hosts reach it at.
func clusterAddrs(ep state.Endpoint) []netip.Addr {
	var out []netip.Addr
	for _, p := range []netip.Prefix{ep.IPv4, ep.IPv6} {
		if p.IsValid() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// publish tells the other hosts where a new endpoint of a vxlan network
// lives: one record per address.
func (d *Driver) publish(n state.Network, ep state.Endpoint) error {
	addrs := clusterAddrs(ep)
	if n.Backend != backendVXLAN || len(addrs) == 0 {
		return nil
	}
	if d.cluster == nil {
		return fmt.Errorf("network %s is part of cluster network %s (vxlan), but this mynet runs without --cluster: start it with --cluster", protocol.Short(n.ID), n.Cluster)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterOp)
	defer cancel()
	for _, a := range addrs {
		_, err := d.cluster.Client.Publish(ctx, cluster.Endpoint{Network: n.Cluster, IP: a, MAC: ep.MAC,
			DockerNetwork: n.ID, EndpointID: ep.ID})
		if errors.Is(err, cluster.ErrInvalid) || errors.Is(err, cluster.ErrTaken) {
			return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// withdrawWait bounds a withdraw: it is best effort, the reconcile finishes
// what etcd did not hear, and a container removal should not wait long.
const withdrawWait = 2 * time.Second

// withdraw removes an endpoint's records. etcd not answering does not fail
// the delete: the reconcile withdraws what has no endpoint here.
func (d *Driver) withdraw(n state.Network, ep state.Endpoint) {
	addrs := clusterAddrs(ep)
	if n.Backend != backendVXLAN || len(addrs) == 0 || d.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), withdrawWait)
	defer cancel()
	for _, a := range addrs {
		if err := d.cluster.Client.Withdraw(ctx, n.Cluster, a); err != nil {
			d.log.Warn("cluster: endpoint record not withdrawn; the reconcile does it", "endpoint", protocol.Short(ep.ID), "address", a, "err", err)
		}
	}
}

// RunCluster programs the VXLAN devices from the view whenever it changes,
// and reconciles this host's endpoint records every interval, until ctx ends.
// The reconcile runs on its own: while etcd keeps it waiting, changes to the
// view still reach the devices. Both take the network's lock to program one.
func (d *Driver) RunCluster(ctx context.Context, interval time.Duration) {
	if d.cluster == nil {
		return
	}
	go periodic.RunWoken(ctx, interval, d.cluster.Client.Reconnected(ctx), func() {
		d.SyncDataPlane()
		rctx, cancel := context.WithTimeout(ctx, clusterOp)
		d.ReconcileEndpoints(rctx, endpointGrace)
		cancel()
	})
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.cluster.View.Changed():
			d.SyncDataPlane()
		}
	}
}

// SyncDataPlane makes every VXLAN device hold exactly the other hosts'
// endpoints of its cluster network, as the view has them, compared with what
// the kernel holds (so hand-made changes are put right too). Until the view
// has been listed once, nothing is removed: etcd away must not cut traffic.
func (d *Driver) SyncDataPlane() {
	if d.cluster == nil {
		return
	}
	span := timing.Begin() // background work, no request's
	defer span.End()
	synced, _, _, _ := d.cluster.View.Status()
	if !synced {
		return
	}
	for _, rec := range d.networkRecords("") {
		if rec.Backend != backendVXLAN {
			continue
		}
		unlock := d.netLock(rec.ID)
		if _, ok := d.lookupNetwork(rec.ID); ok { // not deleted meanwhile
			if err := d.programRemotes(rec, d.remotesOf(rec)); err != nil {
				d.log.Warn("cluster: programming remote endpoints", "network", protocol.Short(rec.ID), "cluster", rec.Cluster, "err", err)
			}
		}
		unlock()
	}
}

func (d *Driver) programRemotes(rec state.Network, want map[netip.Addr]link.Remote) error {
	have, dst, err := link.Remotes(rec.VXLAN)
	if err != nil {
		return err
	}
	var errs []error
	wantMAC := map[string]netip.Addr{}
	for _, r := range want {
		wantMAC[r.MAC] = r.VTEP
	}
	for ip, h := range have {
		if w, ok := want[ip]; !ok || w.MAC != h.MAC {
			errs = append(errs, link.DelRemote(rec.VXLAN, ip, "", netip.Addr{}))
		}
	}
	for mac, vtep := range dst {
		if w, ok := wantMAC[mac]; !ok || w != vtep {
			errs = append(errs, link.DelRemote(rec.VXLAN, netip.Addr{}, mac, vtep))
		}
	}
	for ip, w := range want {
		if h, ok := have[ip]; ok && h == w {
			continue
		}
		errs = append(errs, link.SetRemote(rec.VXLAN, w))
	}
	return errors.Join(errs...)
}

// ReconcileEndpoints makes this host's endpoint records in etcd and its
// VXLAN entries match (see clusterDrift), logging each repair.
func (d *Driver) ReconcileEndpoints(ctx context.Context, grace time.Duration) {
	d.clusterDrift(ctx, grace, func(dr drift.Drift, repair func() error) {
		if err := repair(); err != nil { // counts itself when it succeeds
			d.log.Warn("cluster: "+dr.Detail, "object", dr.Object, "err", err)
			return
		}
		d.log.Info("repaired: "+dr.Detail, "object", dr.Object)
	})
}

// clusterDrift compares what etcd and the kernel hold for this host's vxlan
// networks with what they should hold:
//   - an endpoint here without its record in etcd (etcd was away at
//     CreateEndpoint, lost it, or this host's address changed): publish it;
//   - a record of this host without an endpoint here, older than grace (etcd
//     was away at DeleteEndpoint or DeleteNetwork): withdraw it;
//   - a VXLAN device whose entries differ from the other hosts' endpoints in
//     the view: program them.
//
// Until the view has been listed once it finds nothing: etcd away is not drift.
func (d *Driver) clusterDrift(ctx context.Context, grace time.Duration, report func(drift.Drift, func() error)) {
	if d.cluster == nil {
		return
	}
	if synced, _, _, _ := d.cluster.View.Status(); !synced {
		return
	}
	us, vtep := d.cluster.Client.HostID(), d.cluster.Client.Advertise()
	type local struct {
		rec state.Network
		ep  state.Endpoint
	}
	mine := map[string]map[netip.Addr]local{} // cluster network -> address -> endpoint here
	for _, rec := range d.networkRecords("") {
		if rec.Backend != backendVXLAN {
			continue
		}
		m := map[netip.Addr]local{}
		for _, ep := range d.endpointsOf(rec.ID) {
			for _, a := range clusterAddrs(ep) {
				m[a] = local{rec, ep}
			}
		}
		mine[rec.Cluster] = m
		want := d.remotesOf(rec)
		have, _, err := link.Remotes(rec.VXLAN)
		if err != nil || !maps.Equal(have, want) {
			report(drift.Drift{Kind: drift.ClusterDataPlane, Object: "network " + protocol.Short(rec.ID),
				Detail: fmt.Sprintf("VXLAN device %s holds %d entries, the other hosts have %d endpoints: program them", rec.VXLAN, len(have), len(want))},
				d.counted(drift.ClusterDataPlane, func() error {
					unlock := d.netLock(rec.ID)
					defer unlock()
					if _, ok := d.lookupNetwork(rec.ID); !ok {
						return nil // deleted meanwhile
					}
					return d.programRemotes(rec, d.remotesOf(rec))
				}))
		}
	}
	for name, m := range mine {
		seen := d.cluster.View.Network(name)
		for ip, l := range m {
			if e, ok := seen[ip]; ok && e.Host == us && e.MAC == l.ep.MAC && e.EndpointID == l.ep.ID && e.VTEP == vtep {
				continue
			}
			report(drift.Drift{Kind: drift.ClusterEndpointRecord, Object: "endpoint " + protocol.Short(l.ep.ID),
				Detail: fmt.Sprintf("address %s of cluster network %s has no current record in etcd: publish it", ip, name)},
				d.counted(RepairEndpointRecord, func() error { return d.publish(l.rec, l.ep) }))
		}
	}
	for _, e := range d.cluster.View.All() {
		if _, ok := mine[e.Network][e.IP]; ok || e.Host != us || time.Since(e.Created) < grace {
			continue
		}
		report(drift.Drift{Kind: drift.ClusterEndpointRecord, Object: "address " + e.IP.String(),
			Detail: fmt.Sprintf("etcd has a record of this host for %s in cluster network %s, but no endpoint here uses it: withdraw it", e.IP, e.Network)},
			d.counted(RepairEndpointRecord, func() error { return d.cluster.Client.Withdraw(ctx, e.Network, e.IP) }))
	}
}

// remotesOf: the other hosts' endpoints of rec's cluster network, as its
// VXLAN device should hold them.
func (d *Driver) remotesOf(rec state.Network) map[netip.Addr]link.Remote {
	us := d.cluster.Client.HostID()
	want := map[netip.Addr]link.Remote{}
	for ip, e := range d.cluster.View.Network(rec.Cluster) {
		if e.Host != us && e.VTEP.IsValid() && e.MAC != "" {
			want[ip] = link.Remote{IP: ip, MAC: e.MAC, VTEP: e.VTEP}
		}
	}
	return want
}
