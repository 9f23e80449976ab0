package driver

import (
	"fmt"
	"sync"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
)

func (e *env) lockEntries() int {
	e.d.mu.Lock()
	defer e.d.mu.Unlock()
	return len(e.d.locks)
}

// A client sending calls for ids that name no network, and networks that
// come and go, leave no per-network lock behind: the map holds only the
// networks some call is working on.
func TestNetworkLocksDoNotOutliveTheirCalls(t *testing.T) {
	inNetns(t, func(e *env) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 250 {
					id := fmt.Sprintf("%064x", i*1000+j+1)
					e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: id, EndpointID: ep1, Options: map[string]any{}})
					e.d.Join(&api.JoinRequest{NetworkID: id, EndpointID: ep1})
					e.d.ProgramExternalConnectivity(&api.ProgramExternalConnectivityRequest{NetworkID: id, EndpointID: ep1})
					e.d.RevokeExternalConnectivity(&api.RevokeExternalConnectivityRequest{NetworkID: id, EndpointID: ep1})
					e.d.DeleteEndpoint(&api.DeleteEndpointRequest{NetworkID: id, EndpointID: ep1})
					e.d.DeleteNetwork(&api.DeleteNetworkRequest{NetworkID: id})
				}
			}()
		}
		wg.Wait()
		if n := e.lockEntries(); n != 0 {
			t.Errorf("%d per-network locks left after 2000 ids that name no network", n)
		}
		e.createNetwork(netA, "10.94.0.0/24", "10.94.0.1/24", nil)
		e.createEndpoint(netA, ep1, "10.94.0.2/24")
		e.deleteNetworks(netA)
		if n := e.lockEntries(); n != 0 {
			t.Errorf("%d per-network locks left after the network went", n)
		}
	})
}
