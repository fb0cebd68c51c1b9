package authority

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/caerr"
)

type metrics struct {
	issued   *prometheus.CounterVec
	denied   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_certificates_issued_total",
			Help: "Workload certificates issued, by profile.",
		}, []string{"profile"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_issuance_denied_total",
			Help: "Signing requests refused by the engine, by stable reason.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshca_sign_duration_seconds",
			Help:    "Time to validate, sign and durably record one certificate.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"profile"}),
	}
	if r != nil {
		r.MustRegister(m.issued, m.denied, m.duration)
	}
	return m
}

func (m *metrics) observe(profile string, err error, d time.Duration) {
	if err != nil {
		m.denied.WithLabelValues(caerr.ReasonOf(err)).Inc()
		return
	}
	m.issued.WithLabelValues(profile).Inc()
	m.duration.WithLabelValues(profile).Observe(d.Seconds())
}
