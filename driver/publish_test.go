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

const epIPv4Only = "363636363636eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

// dnat6Rules counts the IPv6 nat rules that publish host port hostPort.
func dnat6Rules(t *testing.T, hostPort string) int {
	t.Helper()
	out, err := exec.Command("ip6tables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("ip6tables-save: %v", err)
	}
	return strings.Count(string(out), "--dport "+hostPort+" -m comment")
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

// -p on every address of a dual-stack endpoint: one record with the IPv6
// target, an ip6tables DNAT rule besides the IPv4 one, no drift for the
// doctor, all of it back after a restart and gone on revoke. On an
// IPv4-only endpoint an IPv6 host address is proxied: held, no rule.
func TestPublishIPv6Side(t *testing.T) {
	inNetns(t, func(e *env) {
		req := netReq(netA, "10.93.0.0/24", "10.93.0.1/24", nil)
		req.Options[optEnableIPv6] = true
		req.IPv6Data = []*api.IPAMData{{AddressSpace: "LocalDefault", Pool: "fd00:93::/64", Gateway: "fd00:93::1/64"}}
		if err := e.d.CreateNetwork(req); err != nil {
			t.Fatal(err)
		}
		if _, err := e.d.CreateEndpoint(&api.CreateEndpointRequest{NetworkID: netA, EndpointID: ep1,
			Interface: &api.EndpointInterface{Address: "10.93.0.2/24", AddressIPv6: "fd00:93::2/64"}, Options: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		if err := e.publish(netA, ep1, portMap("", 28091, 80)); err != nil {
			t.Fatal(err)
		}
		ep, _ := e.d.lookupEndpoint(ep1)
		if len(ep.Ports) != 1 || ep.Ports[0].ContainerIPv6 != netip.MustParseAddr("fd00:93::2") || ep.Ports[0].ContainerIP != netip.MustParseAddr("10.93.0.2") {
			t.Fatalf("record: %v", ep.Ports)
		}
		check := func(when string) {
			t.Helper()
			if n4, n6 := dnatRules(t, "28091"), dnat6Rules(t, "28091"); n4 != 1 || n6 != 1 {
				t.Errorf("%s: %d IPv4 and %d IPv6 DNAT rules, want 1 and 1", when, n4, n6)
			}
			if ds := e.d.Doctor(drift.View{}, false, nil, 0); len(ds) != 0 {
				t.Errorf("%s: doctor: %+v", when, ds)
			}
			if held := e.d.ports.Held(); len(held) != 1 {
				t.Errorf("%s: held %v", when, held)
			}
		}
		check("published")
		e.d.ports.Release(e.d.ports.Held()) // what the old process's exit does
		e.restart()
		check("after a restart")
		if got := e.repaired(); got[RepairOrphanPort] != 0 {
			t.Errorf("the IPv6 rule was taken for a stray port: %v", got)
		}
		if err := e.d.RevokeExternalConnectivity(&api.RevokeExternalConnectivityRequest{NetworkID: netA, EndpointID: ep1}); err != nil {
			t.Fatal(err)
		}
		if n4, n6 := dnatRules(t, "28091"), dnat6Rules(t, "28091"); n4 != 0 || n6 != 0 {
			t.Errorf("after revoke: %d IPv4 and %d IPv6 DNAT rules", n4, n6)
		}
		if held := e.d.ports.Held(); len(held) != 0 {
			t.Errorf("after revoke: held %v", held)
		}

		// IPv4-only endpoint, explicit IPv6 host addresses.
		e.createNetwork(netB, "10.94.0.0/24", "10.94.0.1/24", nil)
		e.createEndpoint(netB, epIPv4Only, "10.94.0.2/24")
		if err := e.publish(netB, epIPv4Only, portMap("::1", 28092, 80)); err != nil {
			t.Fatalf("-p [::1]:28092:80 on an IPv4-only endpoint: %v", err)
		}
		if n4, n6 := dnatRules(t, "28092"), dnat6Rules(t, "28092"); n4 != 0 || n6 != 0 {
			t.Errorf("[::1] (proxied): %d IPv4 and %d IPv6 DNAT rules, want none", n4, n6)
		}
		if held := e.d.ports.Held(); len(held) != 1 || held[0].HostIP != netip.IPv6Loopback() {
			t.Errorf("[::1]: held %v", held)
		}
		if ds := e.d.Doctor(drift.View{}, false, nil, 0); len(ds) != 0 {
			t.Errorf("[::1]: doctor: %+v", ds)
		}
	})
}
