// Package metrics exports mynet's Prometheus metrics: calls by outcome and
// duration, where a lone call's time went (netlink, iptables, bbolt),
// repairs, background reconcile runs, pool use and endpoints per network
// (read at scrape time), and the Go runtime and process collectors. It has
// its own registry, so nothing registered elsewhere in the process leaks
// into /metrics.
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mynet/mynet/drift"
	"github.com/mynet/mynet/driver"
	"github.com/mynet/mynet/ipam"
	"github.com/mynet/mynet/protocol"
	"github.com/mynet/mynet/reconcile"
	"github.com/mynet/mynet/state"
	"github.com/mynet/mynet/timing"
)

// buckets run from 0.5 ms to about 4 s: a lone IPAM call takes about a
// millisecond, a network delete with its iptables work tens to hundreds.
var buckets = prometheus.ExponentialBuckets(0.0005, 2, 14)

// Metrics holds the registry and the instruments the plugin feeds.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	netlink    *prometheus.HistogramVec
	iptables   *prometheus.HistogramVec
	bbolt      *prometheus.HistogramVec
	overlapped *prometheus.CounterVec
	repairs    *prometheus.CounterVec
	etcd       *prometheus.HistogramVec // cluster.go
	watchLag   prometheus.Histogram
	reconciles *prometheus.CounterVec
	reconciled prometheus.Gauge

	mu    sync.Mutex
	pools func() []ipam.PoolUsage
	nets  func() ([]state.Network, []state.Endpoint)
	proxy func() ProxyCounts // ports.go
}

// New builds the registry. Feed it with ObserveRequest (server.Config's
// Observe) and Repair (driver.Config's OnRepair); Track adds the scrape-time
// views of pools and networks once the drivers exist.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mynet_requests_total",
		Help: "Plugin protocol calls answered, by call and outcome (ok, bad_request, error).",
	}, []string{"call", "outcome"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mynet_request_duration_seconds", Buckets: buckets,
		Help: "Time to answer a plugin protocol call, every outcome.",
	}, []string{"call"})
	part := func(name, what string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mynet_request_" + name + "_seconds", Buckets: buckets,
			Help: "Time a call spent in " + what + ", for calls that ran alone (see mynet_requests_overlapped_total).",
		}, []string{"call"})
	}
	m.netlink = part("netlink", "netlink (links, addresses, routes, sysctls)")
	m.iptables = part("iptables", "iptables-save and iptables-restore")
	m.bbolt = part("bbolt", "bbolt transactions including the group commit's fsync")
	m.overlapped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mynet_requests_overlapped_total",
		Help: "Calls that overlapped other work, so their time is not split into netlink, iptables and bbolt.",
	}, []string{"call"})
	m.repairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mynet_repairs_total",
		Help: "Things mynet put right itself (the 'repaired: ...' log lines), by kind.",
	}, []string{"kind"})
	for _, k := range []string{driver.RepairLinks, driver.RepairEndpointAttach, driver.RepairFirewallRules,
		driver.RepairOrphanLink, driver.RepairOrphanRules, driver.RepairOrphanPort,
		drift.NetworkUnknownToDocker, drift.EndpointUnknownToDocker, drift.PoolUnused, drift.AddressUnused} {
		m.repairs.WithLabelValues(k) // present at 0 from the start, so rate() sees the first one
	}
	m.registerCluster()
	m.reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mynet_reconcile_runs_total",
		Help: "Background reconcile runs against Docker's view, by outcome (" + strings.Join(reconcile.Outcomes, ", ") + ").",
	}, []string{"outcome"})
	for _, o := range reconcile.Outcomes {
		m.reconciles.WithLabelValues(o)
	}
	m.reconciled = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mynet_reconcile_last_success_timestamp_seconds",
		Help: "Unix time the last background reconcile with outcome ok ended; 0 before the first.",
	})
	m.reg.MustRegister(m.requests, m.duration, m.netlink, m.iptables, m.bbolt, m.overlapped, m.repairs,
		m.reconciles, m.reconciled, m.etcd, m.watchLag,
		scrapeTime{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest records one answered call; it has server.Config.Observe's
// signature, and outcome is one of server.OK, server.BadRequest, server.Error.
func (m *Metrics) ObserveRequest(call, outcome string, r timing.Result) {
	m.requests.WithLabelValues(call, outcome).Inc()
	m.duration.WithLabelValues(call).Observe(r.Took.Seconds())
	if !r.Alone {
		m.overlapped.WithLabelValues(call).Inc()
		return
	}
	m.netlink.WithLabelValues(call).Observe(r.Parts.Netlink.Seconds())
	m.iptables.WithLabelValues(call).Observe(r.Parts.Iptables.Seconds())
	m.bbolt.WithLabelValues(call).Observe(r.Parts.Bbolt.Seconds())
}

// Repair counts one repair; it has driver.Config.OnRepair's signature.
func (m *Metrics) Repair(kind string) { m.repairs.WithLabelValues(kind).Inc() }

// ReconcileRun counts one background reconcile run; it has
// reconcile.Loop.OnRun's signature.
func (m *Metrics) ReconcileRun(outcome string, at time.Time) {
	m.reconciles.WithLabelValues(outcome).Inc()
	if outcome == reconcile.OK {
		m.reconciled.Set(float64(at.UnixNano()) / 1e9)
	}
}

// Track gives the scrape-time sources of pool use and networks. Either may
// be nil (not exported then).
func (m *Metrics) Track(pools func() []ipam.PoolUsage, nets func() ([]state.Network, []state.Endpoint)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pools, m.nets = pools, nets
}

// Handler serves the registry in the Prometheus text (or negotiated) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// scrapeTime reads pools and networks when scraped, so the figures are
// never stale and nothing has to be kept in step with the drivers.
type scrapeTime struct{ m *Metrics }

var (
	poolAllocated = prometheus.NewDesc("mynet_pool_allocated_addresses",
		"Addresses handed out in the pool (gateway included).", []string{"pool"}, nil)
	poolSize = prometheus.NewDesc("mynet_pool_size_addresses",
		"Addresses the pool can hand out.", []string{"pool"}, nil)
	poolRatio = prometheus.NewDesc("mynet_pool_use_ratio",
		"Allocated / size, 0 to 1.", []string{"pool"}, nil)
	networks = prometheus.NewDesc("mynet_networks",
		"Networks mynet holds, by backend.", []string{"backend"}, nil)
	endpoints = prometheus.NewDesc("mynet_network_endpoints",
		"Endpoints of each network (first 12 characters of Docker's network id).", []string{"network", "backend"}, nil)
)

func (s scrapeTime) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAllocated, poolSize, poolRatio, networks, endpoints, publishedPorts, proxyTotal, proxyOpen} {
		ch <- d
	}
}

func (s scrapeTime) Collect(ch chan<- prometheus.Metric) {
	s.m.mu.Lock()
	pools, nets, proxy := s.m.pools, s.m.nets, s.m.proxy
	s.m.mu.Unlock()
	if proxy != nil {
		collectProxy(ch, proxy)
	}
	if pools != nil {
		for _, p := range pools() {
			ch <- prometheus.MustNewConstMetric(poolAllocated, prometheus.GaugeValue, float64(p.Used), p.ID)
			ch <- prometheus.MustNewConstMetric(poolSize, prometheus.GaugeValue, float64(p.Size), p.ID)
			ratio := 0.0
			if p.Size > 0 {
				ratio = float64(p.Used) / float64(p.Size)
			}
			ch <- prometheus.MustNewConstMetric(poolRatio, prometheus.GaugeValue, ratio, p.ID)
		}
	}
	if nets != nil {
		recs, eps := nets()
		perNet := map[string]int{}
		for _, e := range eps {
			perNet[e.NetworkID]++
		}
		perBackend := map[string]int{}
		for _, n := range recs {
			perBackend[n.Backend]++
			ch <- prometheus.MustNewConstMetric(endpoints, prometheus.GaugeValue, float64(perNet[n.ID]), strings.Clone(protocol.Short(n.ID)), n.Backend)
		}
		for b, c := range perBackend {
			ch <- prometheus.MustNewConstMetric(networks, prometheus.GaugeValue, float64(c), b)
		}
		collectPorts(ch, eps)
	}
}
