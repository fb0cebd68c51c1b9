package alert

import "github.com/prometheus/client_golang/prometheus"

// Results of meshca_alert_notifications_total.
const (
	resultSent    = "sent"
	resultRetried = "retried"
	resultFailed  = "failed"
	resultDropped = "dropped"
)

type metrics struct {
	firing        *prometheus.GaugeVec
	notifications *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer, sinks []Sink) *metrics {
	m := &metrics{
		firing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_alerts_firing",
			Help: "Alerts meshca's alerting engine holds as firing, by rule and severity.",
		}, []string{"alert", "severity"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_alert_notifications_total",
			Help: "Alert notifications by sink and result: sent, retried (an attempt failed and is retried), failed (given up or refused by the receiver), dropped (the sink's queue was full).",
		}, []string{"sink", "result"}),
	}
	for _, s := range sinks {
		for _, res := range []string{resultSent, resultRetried, resultFailed, resultDropped} {
			m.notifications.WithLabelValues(s.Name(), res)
		}
	}
	if r != nil {
		r.MustRegister(m.firing, m.notifications)
	}
	return m
}

func (m *metrics) result(sink, res string) { m.notifications.WithLabelValues(sink, res).Inc() }
