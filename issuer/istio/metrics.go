package istio

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_istio_requests_total",
			Help: "CreateCertificate requests by gRPC result code, authenticator and cluster.",
		}, []string{"code", "authenticator", "cluster"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshca_istio_request_duration_seconds",
			Help:    "CreateCertificate latency by gRPC result code.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_authn_failures_total",
			Help: "Failed authentications at the Istio endpoint, by stable reason.",
		}, []string{"reason"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.latency, m.authFailures)
	}
	return m
}

func (m *metrics) observe(l requestLabels, err error, d time.Duration) {
	code := status.Code(err).String()
	m.requests.WithLabelValues(code, l.authenticator, l.cluster).Inc()
	m.latency.WithLabelValues(code).Observe(d.Seconds())
}
