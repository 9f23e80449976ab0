package driver

import (
	"errors"
	"fmt"

	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// backendVXLAN spans hosts: a bridge network as on one host (gateway on the
// bridge, NAT through this host's uplink, isolation, -p on the host the
// container runs on) whose bridge also holds a VXLAN device. Every host of a
// cluster network has the same subnet, gateway and VNI; the VXLAN device
// reaches the other hosts' containers through entries programmed from etcd.
const backendVXLAN = "vxlan"

// DefaultVXLANPort is the IANA port, used unless --vxlan-port says otherwise.
const DefaultVXLANPort = 4789

// vxlanOverhead is what VXLAN over IPv4 adds to a frame (outer IPv4 20, UDP 8,
// VXLAN 8, inner Ethernet 14).
const vxlanOverhead = 50

// bridged says whether a network has a bridge of ours with firewall rules.
func bridged(n state.Network) bool {
	return n.Backend == backendBridge || n.Backend == backendVXLAN
}

func vxlanName(networkID string) string { return "mnv" + protocol.Short(networkID) }

type vxlanBackend struct{ bridgeBackend }

func (b vxlanBackend) name(rec *state.Network) {
	b.bridgeBackend.name(rec)
	rec.VXLAN = vxlanName(rec.ID)
}

func (b vxlanBackend) check(rec state.Network, others []state.Network) error {
	if err := b.bridgeBackend.check(rec, others); err != nil {
		return err
	}
	for _, o := range others {
		if o.Backend == backendVXLAN && o.VNI == rec.VNI {
			return protocol.BadRequest("VNI %d of cluster network %s is already used by mynet network %s (cluster network %s) on this host", rec.VNI, rec.Cluster, protocol.Short(o.ID), o.Cluster)
		}
	}
	return nil
}

// setup: the bridge network, then the VXLAN device on it. A stale device of
// ours holding the VNI (an unclean stop) is removed; one not ours is an error.
func (b vxlanBackend) setup(rec *state.Network, others []state.Network, creating bool) (retErr error) {
	if err := b.bridgeBackend.setup(rec, others, creating); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, b.bridgeBackend.teardown(*rec, others))
		}
	}()
	if b.d.cluster != nil {
		// The host may have come back with another --advertise: its
		// endpoint records follow (ReconcileEndpoints), so must the device.
		rec.VTEP = b.d.cluster.Client.Advertise()
	}
	v := link.VXLAN{Name: rec.VXLAN, Bridge: rec.Bridge, VNI: rec.VNI, Local: rec.VTEP, Port: rec.VXLANPort, MTU: rec.MTU}
	_, err := link.EnsureVXLAN(v)
	var taken *link.ErrVNITaken
	if errors.As(err, &taken) && b.d.staleVXLAN(taken.Other) {
		b.d.log.Info("repaired: removed a stale VXLAN device holding the VNI", "link", taken.Other, "vni", rec.VNI)
		b.d.repaired(RepairOrphanLink)
		if err = link.Delete(taken.Other); err == nil {
			_, err = link.EnsureVXLAN(v)
		}
	}
	if err != nil {
		return fmt.Errorf("network %s: %w", protocol.Short(rec.ID), err)
	}
	b.d.mark(rec.VXLAN)
	return nil
}

// staleVXLAN: a device named and marked as ours that no network record claims.
func (d *Driver) staleVXLAN(name string) bool {
	if !ourLinkName.MatchString(name) || link.Alias(name) != d.owner {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.networks {
		if n.rec.VXLAN == name {
			return false
		}
	}
	return true
}

func (b vxlanBackend) teardown(rec state.Network, others []state.Network) error {
	return errors.Join(link.Delete(rec.VXLAN), b.bridgeBackend.teardown(rec, others))
}
