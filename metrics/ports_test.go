package metrics

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/mynet/mynet/state"
)

// Published ports by family and how each side is served, and the proxy
// counters: the IPv6 side counted as the IPv4 side is.
func TestPublishedPortsAndProxy(t *testing.T) {
	m := New()
	a := netip.MustParseAddr
	v4, v6 := a("10.0.0.2"), a("fd00::2")
	m.Track(nil, func() ([]state.Network, []state.Endpoint) {
		return []state.Network{{ID: "aaaaaaaaaaaa", Backend: "bridge"}}, []state.Endpoint{
			{ID: "e1", NetworkID: "aaaaaaaaaaaa", Ports: []state.PortBinding{
				{Proto: "tcp", HostPort: 80, ContainerIP: v4, ContainerPort: 80},                           // v4 dnat + v6 proxy
				{Proto: "udp", HostPort: 53, ContainerIP: v4, ContainerIPv6: v6, ContainerPort: 53},        // v4 dnat + v6 dnat
				{Proto: "tcp", HostIP: a("::1"), HostPort: 81, ContainerIP: v6, ContainerPort: 80},         // v6 proxy
				{Proto: "tcp", HostIP: a("2001:db8::5"), HostPort: 82, ContainerIP: v4, ContainerPort: 80}, // v6 proxy
				{Proto: "tcp", HostIP: a("2001:db8::5"), HostPort: 83, ContainerIP: v6, ContainerPort: 80}, // v6 dnat
				{Proto: "tcp", HostIP: a("127.0.0.1"), HostPort: 84, ContainerIP: v4, ContainerPort: 80},   // v4 dnat
				{Proto: "tcp", ContainerIP: v4, ContainerPort: 80},                                         // routed: none
			}},
		}
	})
	m.TrackProxy(func() ProxyCounts { return ProxyCounts{TCPConns: 7, TCPFailed: 1, UDPFlows: 3, Open: 2} })
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	f := scrapeURL(t, srv.Client(), srv.URL)
	for _, c := range []struct {
		fam, via string
		want     float64
	}{{"ipv4", "dnat", 3}, {"ipv6", "dnat", 2}, {"ipv6", "proxy", 3}} {
		if got := gauge(f, "mynet_published_ports", "family", c.fam, "via", c.via); got != c.want {
			t.Errorf("published ports %s via %s: %v, want %v", c.fam, c.via, got, c.want)
		}
	}
	if got := counter(f, "mynet_port_proxy_total", "proto", "tcp", "outcome", "ok"); got != 7 {
		t.Errorf("proxied tcp connections: %v", got)
	}
	if got := counter(f, "mynet_port_proxy_total", "proto", "udp", "outcome", "ok"); got != 3 {
		t.Errorf("proxied udp clients: %v", got)
	}
	if got := gauge(f, "mynet_port_proxy_open"); got != 2 {
		t.Errorf("open proxied connections: %v", got)
	}
}
