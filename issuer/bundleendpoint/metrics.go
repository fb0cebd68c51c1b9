package bundleendpoint

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Request outcomes: fixed label values, never caller input.
const (
	outcomeOK               = "ok"
	outcomeNotModified      = "not_modified"
	outcomeNotFound         = "not_found"
	outcomeMethodNotAllowed = "method_not_allowed"
	outcomeUnavailable      = "unavailable"
	outcomePanic            = "panic"
)

var outcomes = []string{outcomeOK, outcomeNotModified, outcomeNotFound, outcomeMethodNotAllowed, outcomeUnavailable, outcomePanic}

type metrics struct {
	requests        *prometheus.CounterVec
	sequence        prometheus.Gauge
	authorities     prometheus.Gauge
	refreshFailures prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_bundle_endpoint_requests_total",
			Help: "Requests to the SPIFFE bundle endpoint, by outcome (ok, not_modified, not_found, method_not_allowed, unavailable, panic).",
		}, []string{"outcome"}),
		sequence: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_bundle_endpoint_sequence",
			Help: "The spiffe_sequence of the SPIFFE bundle served.",
		}),
		authorities: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_bundle_endpoint_authorities",
			Help: "The X.509 authorities (roots) in the SPIFFE bundle served.",
		}),
		refreshFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshca_bundle_endpoint_refresh_failures_total",
			Help: "Failed rebuilds of the SPIFFE bundle after the roots changed (the previous bundle stays served).",
		}),
	}
	for _, o := range outcomes {
		m.requests.WithLabelValues(o)
	}
	return m
}

func (m *metrics) set(d *Document) {
	m.sequence.Set(float64(d.Sequence))
	m.authorities.Set(float64(len(d.Authorities)))
}

// Register registers the endpoint's metrics with reg.
func (b *Bundler) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{b.metrics.requests, b.metrics.sequence, b.metrics.authorities, b.metrics.refreshFailures} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
