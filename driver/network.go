package driver

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/driver/firewall"
	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
)

// CreateNetwork builds the bridge, its gateway addresses and firewall rules,
// then records the network. On failure nothing is left behind.
func (d *Driver) CreateNetwork(req *api.CreateNetworkRequest) (retErr error) {
	if req.NetworkID == "" {
		return badRequest("NetworkID is empty")
	}
	cfg, err := parseNetworkOptions(req.Options)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	rec := state.Network{
		ID: req.NetworkID, Backend: cfg.Backend, Options: cfg.Raw, EnableIPv6: cfg.EnableIPv6, Internal: cfg.Internal,
		Bridge: cfg.Bridge, MTU: cfg.MTU, ICC: cfg.ICC, Masquerade: cfg.Masquerade, IfacePrefix: cfg.IfPrefix,
		Created: time.Now().UTC(),
	}
	if cfg.HostBinding.IsValid() {
		rec.HostBindingV4 = cfg.HostBinding.String()
	}
	if rec.Bridge == "" {
		rec.Bridge = "mn-" + short(req.NetworkID)
	}
	if rec.IPv4, err = subnets(req.IPv4Data, false); err != nil {
		return err
	}
	if rec.IPv6, err = subnets(req.IPv6Data, true); err != nil {
		return err
	}
	if len(rec.IPv4) > 1 || len(rec.IPv6) > 1 {
		return badRequest("the bridge backend takes one IPv4 and one IPv6 subnet, got %d and %d", len(rec.IPv4), len(rec.IPv6))
	}

	// Creates are rare: one at a time makes the bridge and subnet conflict
	// checks exact without reservations.
	d.createMu.Lock()
	defer d.createMu.Unlock()
	unlock := d.netLock(req.NetworkID)
	defer unlock()
	if _, exists := d.lookupNetwork(req.NetworkID); exists {
		return nil // a retried create: already done
	}
	if err := d.checkConflicts(rec); err != nil {
		return err
	}
	created, err := d.setupBridge(&rec)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, d.teardownBridge(rec, created))
		}
	}()
	if err := d.store.Update(func(tx *state.Tx) error { return tx.PutNetwork(rec) }); err != nil {
		return fmt.Errorf("save network %s: %w", short(rec.ID), err)
	}
	d.mu.Lock()
	d.networks[rec.ID] = &netEntry{rec: rec, cfg: cfg}
	d.mu.Unlock()
	d.log.Info("network created", "network", short(rec.ID), "bridge", rec.Bridge, "created_bridge", created)
	return nil
}

// checkConflicts refuses a bridge or subnet that another of our networks has.
// Callers hold d.createMu.
func (d *Driver) checkConflicts(rec state.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, other := range d.networks {
		if other.rec.Bridge == rec.Bridge {
			return badRequest("bridge %s is already used by mynet network %s: give another %s", rec.Bridge, short(other.rec.ID), optBridgeName)
		}
		for _, a := range append(append([]state.Subnet{}, rec.IPv4...), rec.IPv6...) {
			for _, b := range append(append([]state.Subnet{}, other.rec.IPv4...), other.rec.IPv6...) {
				if a.Pool.Overlaps(b.Pool) {
					return badRequest("subnet %s overlaps subnet %s of mynet network %s", a.Pool, b.Pool, short(other.rec.ID))
				}
			}
		}
	}
	return nil
}

func subnets(data []*api.IPAMData, v6 bool) ([]state.Subnet, error) {
	var out []state.Subnet
	for _, d := range data {
		if d == nil {
			continue
		}
		pool, err := netip.ParsePrefix(d.Pool)
		if err != nil || pool.Addr().Is6() != v6 {
			return nil, badRequest("IPAM pool %q is not an IPv%s prefix", d.Pool, map[bool]string{false: "4", true: "6"}[v6])
		}
		s := state.Subnet{Pool: pool.Masked()}
		if d.Gateway != "" {
			gw, err := netip.ParsePrefix(d.Gateway)
			if err != nil {
				a, err2 := netip.ParseAddr(d.Gateway)
				if err2 != nil {
					return nil, badRequest("IPAM gateway %q is not an address", d.Gateway)
				}
				gw = netip.PrefixFrom(a, pool.Bits())
			}
			s.Gateway = gw
		}
		out = append(out, s)
	}
	return out, nil
}

func fwNetwork(rec state.Network) firewall.Network {
	n := firewall.Network{ID: rec.ID, Bridge: rec.Bridge, ICC: rec.ICC, Masquerade: rec.Masquerade, Internal: rec.Internal}
	for _, s := range rec.IPv4 {
		n.Subnets = append(n.Subnets, s.Pool)
	}
	if rec.EnableIPv6 {
		for _, s := range rec.IPv6 {
			n.Subnets = append(n.Subnets, s.Pool)
		}
	}
	return n
}

// setupBridge makes the kernel match rec: bridge, gateway addresses,
// forwarding, firewall. Idempotent, so restore uses it too. It returns
// whether it created the bridge, and records that in rec.
func (d *Driver) setupBridge(rec *state.Network) (created bool, retErr error) {
	existed, err := link.Exists(rec.Bridge)
	if err != nil {
		return false, err
	}
	if _, err := link.EnsureBridge(rec.Bridge, rec.MTU); err != nil {
		return false, err
	}
	created = !existed
	if created {
		rec.BridgeCreated = true
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, d.teardownBridge(*rec, created))
		}
	}()
	if err := link.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return created, err
	}
	for _, s := range rec.IPv4 {
		if s.Gateway.IsValid() {
			if err := link.EnsureAddr(rec.Bridge, s.Gateway); err != nil {
				return created, err
			}
		}
	}
	if rec.EnableIPv6 && len(rec.IPv6) > 0 {
		if err := link.SetSysctl("net/ipv6/conf/"+rec.Bridge+"/disable_ipv6", "0"); err != nil {
			return created, err
		}
		if err := link.SetSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return created, err
		}
		for _, s := range rec.IPv6 {
			if s.Gateway.IsValid() {
				if err := link.EnsureAddr(rec.Bridge, s.Gateway); err != nil {
					return created, err
				}
			}
		}
	}
	if err := d.fw.AddNetwork(fwNetwork(*rec)); err != nil {
		return created, fmt.Errorf("firewall for network %s: %w", short(rec.ID), err)
	}
	return created, nil
}

// teardownBridge undoes setupBridge: rules, then the bridge if we made it,
// else only our addresses on it.
func (d *Driver) teardownBridge(rec state.Network, created bool) error {
	errs := []error{d.fw.RemoveNetwork(fwNetwork(rec))}
	if created {
		errs = append(errs, link.Delete(rec.Bridge))
	} else {
		for _, s := range append(append([]state.Subnet{}, rec.IPv4...), rec.IPv6...) {
			if s.Gateway.IsValid() {
				errs = append(errs, link.DelAddr(rec.Bridge, s.Gateway))
			}
		}
	}
	return errors.Join(errs...)
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
	errs = append(errs, d.teardownBridge(n.rec, n.rec.BridgeCreated))
	if err := d.store.Update(func(tx *state.Tx) error { return tx.DeleteNetwork(req.NetworkID) }); err != nil {
		errs = append(errs, fmt.Errorf("forget network: %w", err))
	}
	d.mu.Lock()
	delete(d.networks, req.NetworkID)
	d.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete network %s: %w", short(req.NetworkID), err)
	}
	d.log.Info("network deleted", "network", short(req.NetworkID))
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
