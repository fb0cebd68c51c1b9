package authn

import "github.com/prometheus/client_golang/prometheus"

// Metric names of the TokenReview authenticator.
const (
	MetricCacheHits   = "meshca_tokenreview_cache_hits_total"
	MetricCacheMisses = "meshca_tokenreview_cache_misses_total"
	MetricReviews     = "meshca_tokenreview_requests_total"
	// MetricRejectedBeforeReview counts tokens refused without asking an
	// apiserver, by reason (the PreReview* constants).
	MetricRejectedBeforeReview = "meshca_tokenreview_rejected_before_review_total"
	// MetricReviewsInFlight is the number of TokenReview calls in flight
	// (at most TokenReviewOptions.MaxInFlight).
	MetricReviewsInFlight = "meshca_tokenreview_in_flight"
)

type reviewMetrics struct {
	hits     prometheus.Counter
	misses   prometheus.Counter
	reviews  *prometheus.CounterVec
	rejected *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newReviewMetrics(r prometheus.Registerer) *reviewMetrics {
	m := &reviewMetrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricCacheHits,
			Help: "TokenReview results answered from the cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricCacheMisses,
			Help: "TokenReview results not in the cache (a review was made or joined).",
		}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReviews,
			Help: "TokenReviews sent to an apiserver, by configured cluster and result (authenticated, rejected, error).",
		}, []string{"cluster", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRejectedBeforeReview,
			Help: "Bearer tokens refused before any TokenReview, by reason (too_large, malformed, deadline, overloaded, per_peer).",
		}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricReviewsInFlight,
			Help: "TokenReview calls in flight across all clusters.",
		}),
	}
	for _, reason := range preReviewReasons {
		m.rejected.WithLabelValues(reason)
	}
	if r != nil {
		r.MustRegister(m.hits, m.misses, m.reviews, m.rejected, m.inFlight)
	}
	return m
}
