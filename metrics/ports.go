package metrics

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mynet/mynet/state"
)

// ProxyCounts is what the proxies on the held IPv6 sockets forwarded
// (driver/ports.Proxied), read at scrape time.
type ProxyCounts struct {
	TCPConns, TCPFailed, UDPFlows, UDPDropped uint64
	Open                                      int64
}

var (
	publishedPorts = prometheus.NewDesc("mynet_published_ports",
		"Host ports published, by family of the host side and how it reaches the container (dnat: a DNAT rule; proxy: the socket holding the host port forwards, IPv6 only).",
		[]string{"family", "via"}, nil)
	proxyTotal = prometheus.NewDesc("mynet_port_proxy_total",
		"What the proxies on held IPv6 host ports forwarded: tcp connections and udp clients (outcome ok), or could not (outcome failed).",
		[]string{"proto", "outcome"}, nil)
	proxyOpen = prometheus.NewDesc("mynet_port_proxy_open",
		"Proxied tcp connections and udp clients open now.", nil, nil)
)

// TrackProxy gives the scrape-time source of the proxy counters.
func (m *Metrics) TrackProxy(f func() ProxyCounts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proxy = f
}

// portSides counts the published ports of eps by the family of their host
// side and how each side is served (see state.PortBinding.Translated): a
// binding on every address is an IPv4 side and an IPv6 side.
func portSides(eps []state.Endpoint) map[[2]string]int {
	out := map[[2]string]int{{"ipv4", "dnat"}: 0, {"ipv6", "dnat"}: 0, {"ipv6", "proxy"}: 0}
	for _, e := range eps {
		for _, b := range e.Ports {
			if b.HostPort == 0 {
				continue // gateway mode routed: no host port
			}
			switch {
			case !b.HostIP.IsValid():
				if b.ContainerIP.Is4() {
					out[[2]string{"ipv4", "dnat"}]++
				}
				if b.ContainerIPv6.IsValid() || b.ContainerIP.Is6() {
					out[[2]string{"ipv6", "dnat"}]++
				} else {
					out[[2]string{"ipv6", "proxy"}]++
				}
			case b.HostIP.Is4():
				out[[2]string{"ipv4", "dnat"}]++
			case b.ContainerIP.Is6() && b.HostIP != netip.IPv6Loopback():
				out[[2]string{"ipv6", "dnat"}]++
			default:
				out[[2]string{"ipv6", "proxy"}]++
			}
		}
	}
	return out
}

func collectPorts(ch chan<- prometheus.Metric, eps []state.Endpoint) {
	for k, n := range portSides(eps) {
		ch <- prometheus.MustNewConstMetric(publishedPorts, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

func collectProxy(ch chan<- prometheus.Metric, f func() ProxyCounts) {
	c := f()
	ch <- prometheus.MustNewConstMetric(proxyTotal, prometheus.CounterValue, float64(c.TCPConns), "tcp", "ok")
	ch <- prometheus.MustNewConstMetric(proxyTotal, prometheus.CounterValue, float64(c.TCPFailed), "tcp", "failed")
	ch <- prometheus.MustNewConstMetric(proxyTotal, prometheus.CounterValue, float64(c.UDPFlows), "udp", "ok")
	ch <- prometheus.MustNewConstMetric(proxyTotal, prometheus.CounterValue, float64(c.UDPDropped), "udp", "failed")
	ch <- prometheus.MustNewConstMetric(proxyOpen, prometheus.GaugeValue, float64(c.Open))
}
