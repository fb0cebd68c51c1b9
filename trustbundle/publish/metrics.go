package publish

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the object label of meshca_trustbundle_* metrics.
const (
	objectCACerts     = "cacerts"
	objectRootCM      = "root-configmap"
	objectCRLCM       = "crl-configmap"
	objectTrustBundle = "clustertrustbundle"
	objectPQAnchorsCM = "pq-anchors-configmap"
)

// Reasons of meshca_trustbundle_refused.
const reasonTooLarge = "too-large"

var allObjects = []string{objectCACerts, objectRootCM, objectCRLCM, objectTrustBundle, objectPQAnchorsCM}

type metrics struct {
	writes      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	conflicts   *prometheus.GaugeVec
	refused     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_trustbundle_writes_total",
			Help: "Objects meshca wrote to Kubernetes to restore the desired trust material, by object and operation (apply, delete).",
		}, []string{"object", "operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_trustbundle_errors_total",
			Help: "Failed reconciles of trust material (retried with backoff), by object.",
		}, []string{"object"}),
		conflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_trustbundle_conflicts",
			Help: "Objects meshca must write but does not, because they exist and are not meshca's (set trustBundle.takeOwnership to replace them).",
		}, []string{"object"}),
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_trustbundle_refused",
			Help: "Objects meshca refuses to publish because their content breaks a Kubernetes limit; the previous content stays.",
		}, []string{"object", "reason"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_trustbundle_last_success_timestamp_seconds",
			Help: "When meshca last found or made an object match the desired trust material, in seconds since the epoch.",
		}, []string{"object"}),
	}
	for _, o := range allObjects {
		m.conflicts.WithLabelValues(o)
		m.refused.WithLabelValues(o, reasonTooLarge)
		m.errors.WithLabelValues(o)
		m.writes.WithLabelValues(o, "apply")
	}
	m.writes.WithLabelValues(objectTrustBundle, "delete")
	m.writes.WithLabelValues(objectPQAnchorsCM, "delete")
	if r != nil {
		r.MustRegister(m.writes, m.errors, m.conflicts, m.refused, m.lastSuccess)
	}
	return m
}

func (m *metrics) wrote(object, operation string) {
	m.writes.WithLabelValues(object, operation).Inc()
}

func (m *metrics) failed(object string) { m.errors.WithLabelValues(object).Inc() }

func (m *metrics) succeeded(object string, now time.Time) {
	m.lastSuccess.WithLabelValues(object).Set(float64(now.UnixNano()) / 1e9)
}
