package driver

import (
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
)

func portMap(hostIP string, hostPort, ctrPort int) []any {
	return []any{map[string]any{"Proto": float64(6), "Port": float64(ctrPort), "HostIP": hostIP,
		"HostPort": float64(hostPort), "HostPortEnd": float64(hostPort)}}
}

func (e *env) publish(netID, epID string, pm []any) error {
	return e.d.ProgramExternalConnectivity(&api.ProgramExternalConnectivityRequest{NetworkID: netID, EndpointID: epID,
		Options: map[string]any{optPortMap: pm}})
}

// -p on a network whose rules someone removed tells the user what happened
// and what to do, not what the firewall package expects of its caller.
func TestPublishWithoutNetworkRulesSaysWhatToDo(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.95.0.0/24", "10.95.0.1/24", nil)
		e.createEndpoint(netA, ep1, "10.95.0.2/24")
		n, _ := e.d.lookupNetwork(netA)
		if err := e.d.fw.RemoveNetwork(fwNetwork(n.rec)); err != nil {
			t.Fatal(err)
		}
		err := e.publish(netA, ep1, portMap("127.0.0.1", 28081, 80))
		if err == nil {
			t.Fatal("published on a network without rules")
		}
		for _, want := range []string{"rules of network aaaaaaaaaaaa are missing", "mynet doctor --fix"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "AddNetwork") {
			t.Errorf("error %q names an internal call", err)
		}
		if held := e.d.ports.Held(); len(held) != 0 {
			t.Errorf("the refused -p holds %v", held)
		}
	})
}
