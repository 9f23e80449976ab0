package driver

import (
	"errors"
	"fmt"

	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
)

// restore loads the store and makes the kernel match it: Docker never
// replays CreateNetwork, so after a reboot or a hand-deleted bridge only we
// can rebuild. Each repair is logged. One broken network does not stop the
// others from coming back.
func (d *Driver) restore() error {
	var nets []state.Network
	var eps []state.Endpoint
	err := d.store.View(func(tx *state.Tx) error {
		var err error
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		eps, err = tx.Endpoints()
		return err
	})
	if err != nil {
		return fmt.Errorf("load networks: %w", err)
	}
	if err := d.fw.EnsureBase(); err != nil {
		return fmt.Errorf("firewall base chains: %w", err)
	}
	for _, rec := range nets {
		cfg, err := parseNetworkOptions(map[string]any{optGeneric: toAny(rec.Options), optEnableIPv6: rec.EnableIPv6, optInternal: rec.Internal})
		if err != nil {
			d.log.Error("stored network has options this version refuses", "network", short(rec.ID), "err", err)
		}
		existed, _ := link.Exists(rec.Bridge)
		if _, err := d.setupBridge(&rec); err != nil {
			d.log.Error("restore network", "network", short(rec.ID), "bridge", rec.Bridge, "err", err)
		} else if !existed {
			d.log.Info("repaired: re-created missing bridge", "network", short(rec.ID), "bridge", rec.Bridge)
		}
		d.networks[rec.ID] = &netEntry{rec: rec, cfg: cfg}
	}
	for i := range eps {
		ep := eps[i]
		d.endpoints[ep.ID] = &ep
		n, ok := d.networks[ep.NetworkID]
		if !ok {
			d.log.Warn("endpoint of unknown network", "endpoint", short(ep.ID), "network", short(ep.NetworkID))
			continue
		}
		if err := d.restoreEndpoint(n.rec, ep); err != nil {
			d.log.Error("restore endpoint", "endpoint", short(ep.ID), "network", short(ep.NetworkID), "err", err)
		}
	}
	return nil
}

// restoreEndpoint puts a surviving host veth back on its bridge and re-takes
// its published ports.
func (d *Driver) restoreEndpoint(n state.Network, ep state.Endpoint) error {
	var errs []error
	if ok, _ := link.Exists(ep.HostIf); ok {
		if master, err := link.Master(ep.HostIf); err != nil || master != n.Bridge {
			errs = append(errs, link.AttachByName(ep.HostIf, n.Bridge))
			d.log.Info("repaired: re-attached endpoint to its bridge", "endpoint", short(ep.ID), "bridge", n.Bridge)
		}
	}
	if len(ep.Ports) > 0 {
		bindings := fromRecords(ep.Ports)
		for _, b := range bindings {
			if err := d.ports.Restore(b); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, d.fw.AddPorts(fwNetwork(n), fwPorts(bindings)))
	}
	return errors.Join(errs...)
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
