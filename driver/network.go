package driver

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/state"
)

// CreateNetwork builds the network in the kernel (bridge, addresses and
// rules; or the parent link), then records it. On failure nothing is left behind.
func (d *Driver) CreateNetwork(req *api.CreateNetworkRequest) (retErr error) {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return err
	}
	cfg, err := parseNetworkOptions(req.Options)
	if err != nil {
		return fmt.Errorf("%w: %v", protocol.ErrBadRequest, err)
	}
	rec := state.Network{
		ID: req.NetworkID, Backend: cfg.Backend, Options: cfg.Raw, EnableIPv6: cfg.EnableIPv6, Internal: cfg.Internal,
		Bridge: cfg.Bridge, MTU: cfg.MTU, ICC: cfg.ICC, Masquerade: cfg.Masquerade, IfacePrefix: cfg.IfPrefix,
		Parent: cfg.Parent, Mode: cfg.Mode, Flag: cfg.Flag,
		GatewayModeV4: cfg.GwModeV4, GatewayModeV6: cfg.GwModeV6, InhibitIPv4: cfg.InhibitIPv4, TrustedIfs: cfg.TrustedIfs,
		Created: time.Now().UTC(),
	}
	if cfg.HostBinding.IsValid() {
		rec.HostBindingV4 = cfg.HostBinding.String()
	}
	if rec.IPv4, err = subnets(req.IPv4Data, false); err != nil {
		return err
	}
	if rec.IPv6, err = subnets(req.IPv6Data, true); err != nil {
		return err
	}
	if len(rec.IPv4) > 1 || len(rec.IPv6) > 1 {
		return protocol.BadRequest("a mynet network takes one IPv4 and one IPv6 subnet, got %d and %d", len(rec.IPv4), len(rec.IPv6))
	}
	b := d.backend(rec.Backend)
	b.name(&rec)
	if err := d.clusterFields(&rec); err != nil {
		return err
	}

	// Creates are rare: one at a time makes the conflict checks exact
	// without reservations.
	d.createMu.Lock()
	defer d.createMu.Unlock()
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	if n, exists := d.lookupNetwork(req.NetworkID); exists {
		// A retried create succeeds; one asking for another network is
		// refused, and neither touches the existing network.
		return sameNetwork(n.rec, rec)
	}
	others := d.networkRecords("")
	if err := checkSubnets(rec, others); err != nil {
		return err
	}
	if err := d.defineInCluster(&rec, cfg); err != nil {
		return err
	}
	if err := b.check(rec, others); err != nil {
		return err
	}
	d.reaper.Wait(rec.Bridge) // a deleted network's bridge of the same name
	if err := b.setup(&rec, others, true); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, b.teardown(rec, others))
		}
	}()
	if err := errors.Join(b.addRules([]state.Network{rec})...); err != nil {
		return err
	}
	d.forgetEarlierFlows(rec)
	if err := d.store.Update(func(tx *state.Tx) error { return tx.PutNetwork(rec) }); err != nil {
		return fmt.Errorf("save network %s: %w", protocol.Short(rec.ID), err)
	}
	d.mu.Lock()
	d.networks[rec.ID] = &netEntry{rec: rec}
	d.mu.Unlock()
	d.log.Info("network created", "network", protocol.Short(rec.ID), "backend", rec.Backend, "bridge", rec.Bridge, "parent", rec.Parent)
	return nil
}

// networkRecords returns every network but the one with id except.
func (d *Driver) networkRecords(except string) []state.Network {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]state.Network, 0, len(d.networks))
	for id, n := range d.networks {
		if id != except {
			out = append(out, n.rec)
		}
	}
	return out
}

// checkSubnets refuses a subnet that overlaps one of another of our networks.
func checkSubnets(rec state.Network, others []state.Network) error {
	for _, other := range others {
		for _, a := range allSubnets(rec) {
			for _, b := range allSubnets(other) {
				if a.Pool.Overlaps(b.Pool) {
					return protocol.BadRequest("subnet %s overlaps subnet %s of mynet network %s", a.Pool, b.Pool, protocol.Short(other.ID))
				}
			}
		}
	}
	return nil
}

func allSubnets(n state.Network) []state.Subnet {
	return append(append([]state.Subnet{}, n.IPv4...), n.IPv6...)
}

func subnets(data []*api.IPAMData, v6 bool) ([]state.Subnet, error) {
	var out []state.Subnet
	for _, d := range data {
		if d == nil {
			continue
		}
		pool, err := netip.ParsePrefix(d.Pool)
		if err != nil || pool.Addr().Is6() != v6 {
			return nil, protocol.BadRequest("IPAM pool %q is not an IPv%s prefix", d.Pool, map[bool]string{false: "4", true: "6"}[v6])
		}
		s := state.Subnet{Pool: pool.Masked()}
		if d.Gateway != "" {
			gw, err := netip.ParsePrefix(d.Gateway)
			if err != nil {
				a, err2 := netip.ParseAddr(d.Gateway)
				if err2 != nil {
					return nil, protocol.BadRequest("IPAM gateway %q is not an address", d.Gateway)
				}
				gw = netip.PrefixFrom(a, pool.Bits())
			}
			if !s.Pool.Contains(gw.Addr()) {
				return nil, protocol.BadRequest("IPAM gateway %s is outside its pool %s", gw.Addr(), s.Pool)
			}
			s.Gateway = gw
		}
		out = append(out, s)
	}
	return out, nil
}

// DeleteNetwork removes what CreateNetwork made, and any endpoint Docker
// forgot to delete first. Unknown networks succeed.
func (d *Driver) DeleteNetwork(req *api.DeleteNetworkRequest) error {
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	n, ok := d.lookupNetwork(req.NetworkID)
	if !ok {
		return nil
	}
	var errs []error
	for _, ep := range d.endpointsOf(req.NetworkID) {
		errs = append(errs, d.removeEndpoint(n.rec, ep))
	}
	errs = append(errs, d.backendToDelete(n.rec.Backend).teardown(n.rec, d.networkRecords(req.NetworkID)))
	if err := d.store.Update(func(tx *state.Tx) error { return tx.DeleteNetwork(req.NetworkID) }); err != nil {
		errs = append(errs, fmt.Errorf("forget network: %w", err))
	}
	d.mu.Lock()
	delete(d.networks, req.NetworkID)
	delete(d.waiting, req.NetworkID)
	d.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete network %s: %w", protocol.Short(req.NetworkID), err)
	}
	d.log.Info("network deleted", "network", protocol.Short(req.NetworkID))
	return nil
}

func (d *Driver) endpointsOf(networkID string) []state.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []state.Endpoint
	for _, e := range d.endpoints {
		if e.NetworkID == networkID {
			out = append(out, *e)
		}
	}
	return out
}
