package crl

import (
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/store"
)

// Values of the kind label.
const (
	kindFull  = "full"
	kindDelta = "delta"
)

// reasonLabels are the reasons meshca records (RFC 5280 section 5.3.1;
// certificateHold and removeFromCRL are not: revocations are final), with
// their metric label. The label is a validated enum, never caller text.
var reasonLabels = map[store.Reason]string{}

func init() {
	for r := store.ReasonUnspecified; r <= store.ReasonAACompromise; r++ {
		if r == 7 || r == store.ReasonCertificateHold || r == store.ReasonRemoveFromCRL {
			continue
		}
		reasonLabels[r] = r.String()
	}
}

func reasonLabel(r store.Reason) string {
	if l, ok := reasonLabels[r]; ok {
		return l
	}
	return "unknown"
}

type metrics struct {
	number        *prometheus.GaugeVec
	nextUpdate    *prometheus.GaugeVec
	entries       *prometheus.GaugeVec
	buildSeconds  prometheus.Histogram
	publishErrors prometheus.Counter
	buildErrors   *prometheus.CounterVec
	unencodable   *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	oversize      prometheus.Gauge
	incomplete    prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		number: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_crl_number",
			Help: "CRLNumber of the CRL served, by scope (gen-<id>, root, root-<hex>, root-external, root-external-<hex>) and kind (full, delta).",
		}, []string{"scope", "kind"}),
		nextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_crl_next_update_timestamp_seconds",
			Help: "nextUpdate of the CRL served, in seconds since the epoch, by scope and kind.",
		}, []string{"scope", "kind"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_crl_entries",
			Help: "Revoked certificates listed on the CRL served, by scope and kind.",
		}, []string{"scope", "kind"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshca_crl_build_seconds",
			Help:    "Time to build and sign one CRL.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshca_crl_publish_errors_total",
			Help: "Failed CRL rebuilds or publications (retried with backoff).",
		}),
		buildErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_crl_build_errors_total",
			Help: "Failed builds of a CRL, by scope (gen-<id>, root); the other scopes are served and the failed one is retried.",
		}, []string{"scope"}),
		unencodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_crl_unencodable_records_total",
			Help: "Stored revocation records a full CRL could not list as stored (a date or serial a CRL cannot carry), by scope; each is logged.",
		}, []string{"scope"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_revocations_total",
			Help: "Certificates newly revoked through this process (a repeated revocation is not counted), by RFC 5280 reason.",
		}, []string{"reason"}),
		oversize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_crl_oversize",
			Help: "1 while ca-crl.pem is too large for the istio-ca-crl ConfigMap and the last good one stays published.",
		}),
		incomplete: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_crl_incomplete",
			Help: "1 while ca-crl.pem is not published because some certificate of cert-chain.pem has no CRL (e.g. the root's is not available yet).",
		}),
	}
	for _, l := range reasonLabels {
		m.revocations.WithLabelValues(l)
	}
	if r != nil {
		r.MustRegister(m.number, m.nextUpdate, m.entries, m.buildSeconds, m.publishErrors, m.buildErrors, m.unencodable, m.revocations, m.oversize, m.incomplete)
	}
	return m
}

func (m *metrics) observe(scope, kind string, p *Published, entries int) {
	m.number.WithLabelValues(scope, kind).Set(float64(p.Number))
	m.nextUpdate.WithLabelValues(scope, kind).Set(float64(p.NextUpdate.Unix()))
	m.entries.WithLabelValues(scope, kind).Set(float64(entries))
}

func parseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }

// forget stops reporting a scope that is no longer built (a generation
// past its grace period), so that its last nextUpdate does not read as
// a stale CRL.
func (m *metrics) forget(scope string) {
	for _, kind := range []string{kindFull, kindDelta} {
		m.number.DeleteLabelValues(scope, kind)
		m.nextUpdate.DeleteLabelValues(scope, kind)
		m.entries.DeleteLabelValues(scope, kind)
	}
	m.buildErrors.DeleteLabelValues(scope)
	m.unencodable.DeleteLabelValues(scope)
}
