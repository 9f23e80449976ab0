package driver

import "github.com/mynet/mynet/drift"

// Kinds of repair, as Config.OnRepair hears them: one call per thing put
// right, next to each "repaired: ..." log line. They are mynet doctor's
// drift kinds, so a repair at start and one by doctor --fix count alike.
const (
	RepairLinks          = drift.LinksMissing     // a network's missing bridge or parent re-created
	RepairEndpointAttach = drift.EndpointDetached // a veth put back on its bridge
	RepairFirewallRules  = drift.RulesMissing     // a network's missing rules re-added (start or periodic check)
	RepairOrphanLink     = drift.OrphanLink       // a link of ours no record claims, removed
	RepairOrphanRules    = drift.OrphanRules      // rules of ours no record claims, removed
)

func (d *Driver) repaired(kind string) {
	if d.onRepair != nil {
		d.onRepair(kind)
	}
}
