package driver

import (
	"fmt"

	"github.com/mynet/mynet/driver/link"
	"github.com/mynet/mynet/state"
)

// madeLinks says whether mynet created the network's bridge or parent (so
// a rebuild makes it again, and the network's delete removes it).
func madeLinks(n state.Network) bool {
	if n.Backend == backendBridge {
		return n.BridgeCreated
	}
	return n.ParentCreated
}

// awaitLink refuses to rebuild on a link the user made (a bridge or parent
// that existed when the network was created) while it is missing: after a
// reboot the network configuration may not have made it yet, and a link
// mynet created in its place would clash with it. The network is set up
// again by a later check once the link is back (see Driver.waiting).
func awaitLink(name, what string) error {
	ok, err := link.Exists(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s %s is not mynet's (it existed when the network was created) and is missing: waiting for the network configuration to create it", what, name)
	}
	return nil
}
