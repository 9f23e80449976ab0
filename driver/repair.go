package driver

// Kinds of repair, as Config.OnRepair hears them: one call per thing put
// right, next to each "repaired: ..." log line.
const (
	RepairLinks          = "links"                 // a network's missing bridge or parent re-created at start
	RepairEndpointAttach = "endpoint_attach"       // a veth put back on its bridge at start
	RepairFirewallRules  = "firewall_rules"        // a network's missing rules re-added (start or periodic check)
	RepairOrphanLink     = "orphan_link"           // a link of ours no record claims, removed at start
	RepairOrphanRules    = "orphan_firewall_rules" // rules of ours no record claims, removed at start
)

func (d *Driver) repaired(kind string) {
	if d.onRepair != nil {
		d.onRepair(kind)
	}
}
