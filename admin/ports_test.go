package admin

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mynet/mynet/state"
)

// `mynet ports`: a port on every address shows its IPv6 side as a row of
// its own, to the container's IPv6 address or, without one, its IPv4
// address (proxied); IPv6 addresses are bracketed before the port.
func TestPublishedPortsIPv6Rows(t *testing.T) {
	a := netip.MustParseAddr
	s := Snapshot{Endpoints: []state.Endpoint{{ID: "e1e1e1e1e1e1e1", NetworkID: "n1n1n1n1n1n1n1", Ports: []state.PortBinding{
		{Proto: "tcp", HostPort: 8080, ContainerIP: a("10.0.0.2"), ContainerIPv6: a("fd00::2"), ContainerPort: 80},
		{Proto: "udp", HostPort: 5353, ContainerIP: a("10.0.0.2"), ContainerPort: 53},
		{Proto: "tcp", HostIP: a("::1"), HostPort: 9090, ContainerIP: a("10.0.0.2"), ContainerPort: 90},
	}}}}
	_, table := publishedPorts(s)
	var got [][]string
	for _, r := range table[1:] {
		got = append(got, r[:4])
	}
	want := [][]string{
		{"0.0.0.0", "5353", "udp", "10.0.0.2:53"},
		{"::", "5353", "udp", "10.0.0.2:53"},
		{"0.0.0.0", "8080", "tcp", "10.0.0.2:80"},
		{"::", "8080", "tcp", "[fd00::2]:80"},
		{"::1", "9090", "tcp", "10.0.0.2:90"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
}
