package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func (m *Metrics) registerCluster() {
	m.etcd = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mynet_etcd_request_duration_seconds", Buckets: buckets,
		Help: "etcd round trips of --cluster, by operation and outcome (ok, error).",
	}, []string{"op", "outcome"})
	m.watchLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mynet_cluster_watch_lag_seconds", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		Help: "From an endpoint record's creation on its host to its arrival in this host's watch (clocks of both hosts).",
	})
}

// ObserveEtcd records one etcd round trip, or the watch lag of an endpoint
// record (op "watch_lag"); it has cluster.Config.Observe's signature.
func (m *Metrics) ObserveEtcd(op string, took time.Duration, err error) {
	if op == "watch_lag" {
		m.watchLag.Observe(max(took, 0).Seconds())
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.etcd.WithLabelValues(op, outcome).Observe(took.Seconds())
}
