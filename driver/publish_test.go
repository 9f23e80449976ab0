package driver

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	api "github.com/docker/go-plugins-helpers/network"
	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/state"
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

// dnatRules counts the IPv4 nat rules that publish host port hostPort.
func dnatRules(t *testing.T, hostPort string) int {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "--dport "+hostPort+" ") && strings.Contains(line, "DNAT") {
			n++
		}
	}
	return n
}

// A crash between a published port's rule and its record leaves a DNAT rule
// no endpoint claims; it would forward the host port to whichever container
// next gets that address. mynet doctor reports it, and a start removes it and
// keeps the ports the records hold.
func TestStrayPublishedPortIsRemoved(t *testing.T) {
	inNetns(t, func(e *env) {
		e.createNetwork(netA, "10.92.0.0/24", "10.92.0.1/24", nil)
		e.createEndpoint(netA, ep1, "10.92.0.2/24")
		if err := e.publish(netA, ep1, portMap("127.0.0.1", 28082, 80)); err != nil {
			t.Fatal(err)
		}
		n, _ := e.d.lookupNetwork(netA)
		stray := state.PortBinding{Proto: "tcp", HostPort: 28083,
			ContainerIP: netip.MustParseAddr("10.92.0.3"), ContainerPort: 80}
		if err := e.d.fw.AddPorts(fwNetwork(n.rec), []state.PortBinding{stray}); err != nil {
			t.Fatal(err)
		}
		ds := e.d.Doctor(drift.View{}, false, nil, 0)
		if len(ds) != 1 || ds[0].Kind != drift.OrphanPort || !strings.Contains(ds[0].Detail, "28083") {
			t.Errorf("doctor: %+v, want the stray port", ds)
		}
		e.restart()
		if got := dnatRules(t, "28083"); got != 0 {
			t.Errorf("%d DNAT rules of the stray port after a start", got)
		}
		if got := dnatRules(t, "28082"); got != 1 {
			t.Errorf("%d DNAT rules of the recorded port after a start, want 1", got)
		}
		if got := e.repaired(); got[RepairOrphanPort] != 1 {
			t.Errorf("OnRepair heard %v, want one stray port", got)
		}
		if ds := e.d.Doctor(drift.View{}, false, nil, 0); len(ds) != 0 {
			t.Errorf("doctor after the start: %+v", ds)
		}
	})
}
