package driver

import "github.com/mynet/mynet/driver/doctor"

// Kinds of repair, as Config.OnRepair hears them: one call per thing put
// right, next to each "repaired: ..." log line. They are mynet doctor's
// drift kinds, so a repair at start and one by doctor --fix count alike.
const (
	RepairLinks          = doctor.LinksMissing     // a network's missing bridge or parent re-created
	RepairEndpointAttach = doctor.EndpointDetached // a veth put back on its bridge
	RepairFirewallRules  = doctor.RulesMissing     // a network's missing rules re-added (start or periodic check)
	RepairOrphanLink     = doctor.OrphanLink       // a link of ours no record claims, removed
	RepairOrphanRules    = doctor.OrphanRules      // rules of ours no record claims, removed
)

func (d *Driver) repaired(kind string) {
	if d.onRepair != nil {
		d.onRepair(kind)
	}
}
