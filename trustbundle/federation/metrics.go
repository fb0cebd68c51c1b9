package federation

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Every label value is a trust domain from meshca's configuration or an
// outcome constant, never data from the endpoint.

var allOutcomes = []string{OutcomeUpdated, OutcomeUnchanged, OutcomeError, OutcomeTooLarge, OutcomeInvalid, OutcomeForeign}

var (
	descAge = prometheus.NewDesc("meshca_federation_bundle_age_seconds",
		"Seconds since the foreign trust domain's bundle was last fetched successfully (since meshca started, when never).",
		[]string{"trust_domain"}, nil)
	descLastSuccess = prometheus.NewDesc("meshca_federation_bundle_last_success_timestamp_seconds",
		"When the foreign trust domain's bundle was last fetched successfully, in seconds since the epoch (absent when never).",
		[]string{"trust_domain"}, nil)
	descSequence = prometheus.NewDesc("meshca_federation_bundle_sequence",
		"The spiffe_sequence of the foreign trust domain's last good bundle (absent when it has none).",
		[]string{"trust_domain"}, nil)
	descAuthorities = prometheus.NewDesc("meshca_federation_bundle_x509_authorities",
		"X.509 authorities (roots) in the foreign trust domain's last good bundle.",
		[]string{"trust_domain"}, nil)
	descStaleAfter = prometheus.NewDesc("meshca_federation_stale_after_seconds",
		"federation.staleAfter: the bundle age above which a foreign bundle counts as stale.", nil, nil)
)

type metrics struct {
	p       *Poller
	fetches *prometheus.CounterVec
}

func newMetrics(p *Poller, r prometheus.Registerer) *metrics {
	m := &metrics{p: p, fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshca_federation_fetch_total",
		Help: "Fetches of foreign trust domains' SPIFFE bundles, by trust domain and outcome (updated, unchanged, error, too_large, invalid, wrong_trust_domain).",
	}, []string{"trust_domain", "outcome"})}
	for _, d := range p.domains {
		for _, o := range allOutcomes {
			m.fetches.WithLabelValues(d.td.Name(), o)
		}
	}
	if r != nil {
		r.MustRegister(m.fetches, m)
	}
	return m
}

func (m *metrics) fetched(td spiffeid.TrustDomain, outcome string) {
	m.fetches.WithLabelValues(td.Name(), outcome).Inc()
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAge, descLastSuccess, descSequence, descAuthorities, descStaleAfter} {
		ch <- d
	}
}

// Collect computes the ages at scrape time, on the poller's clock.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	p := m.p
	now := p.o.Clock.Now()
	ch <- prometheus.MustNewConstMetric(descStaleAfter, prometheus.GaugeValue, p.cfg.StaleAfter.Seconds())
	for _, d := range p.domains {
		name := d.td.Name()
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, p.age(d.td, now).Seconds(), name)
		s, ok := p.snapshot(d.td)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(s.FetchedAt.UnixNano())/1e9, name)
		ch <- prometheus.MustNewConstMetric(descAuthorities, prometheus.GaugeValue, float64(len(s.Bundle.X509Authorities())), name)
		if seq, ok := s.Bundle.SequenceNumber(); ok {
			ch <- prometheus.MustNewConstMetric(descSequence, prometheus.GaugeValue, float64(seq), name)
		}
	}
}
