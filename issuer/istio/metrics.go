package istio

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/issuer/authn"
)

// Label values for callers and reasons that are not in a fixed set.
const (
	labelUnknown = "unknown" // cluster: unauthenticated, or not a configured cluster
	labelNone    = "none"    // authenticator: the request was not authenticated
	labelOther   = "other"   // authenticator or reason outside the known set
)

// authReasons are the failure reasons authn returns. Label values come only
// from this fixed set; anything else is counted as "other" (the audit line
// keeps the exact reason).
var authReasons = map[string]bool{
	"no_credentials": true, "error": true,
	"untrusted_certificate": true, "unknown_certificate": true, "revoked_certificate": true, authn.ReasonChainTooLong: true,
	authn.ReasonMalformedToken: true, authn.ReasonUnsupportedAlgorithm: true, authn.ReasonUnknownKey: true,
	authn.ReasonBadSignature: true, authn.ReasonExpired: true, authn.ReasonNotYetValid: true,
	authn.ReasonInvalidClaims: true, authn.ReasonNoIdentity: true, // also the client certificate's
	authn.ReasonJWKSUnavailable:      true,
	authn.ReasonUnauthenticatedToken: true, authn.ReasonWrongAudience: true, authn.ReasonNotAServiceAccount: true,
	authn.ReasonUnknownCluster: true, authn.ReasonReviewFailed: true,
}

// authenticators are the names authn.Chain gives its authenticators.
var authenticators = map[string]bool{authn.ClientCertificate: true, authn.JWT: true, authn.TokenReview: true}

type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	// signerRequests is nil unless CertSigners are configured.
	signerRequests *prometheus.CounterVec
	// signerCounters caches its children per signerKey.
	signerCounters sync.Map
	// clusters are the configured cluster IDs, the only cluster label
	// values besides "unknown".
	clusters map[string]bool
	// observers caches the children of requests and latency per label
	// set (obsKey to *observers), so that a request does not hash its
	// label values: every key comes from the fixed sets above, so it stays
	// small.
	observers sync.Map
}

type obsKey struct {
	code                   codes.Code
	authenticator, cluster string
}

type signerKey struct {
	code   codes.Code
	signer string
}

type observers struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(r prometheus.Registerer, clusters []string, certSigners bool) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_istio_requests_total",
			Help: "CreateCertificate requests by gRPC result code, authenticator and cluster (a configured cluster of the authenticated caller, else unknown).",
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
		clusters: map[string]bool{},
	}
	for _, c := range clusters {
		m.clusters[c] = true
	}
	if certSigners {
		m.signerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_istio_cert_signer_requests_total",
			Help: "Authenticated CreateCertificate requests by CertSigner (a configured name, default for an empty one, unknown for any other) and gRPC result code. Only with authentication.certSigners.",
		}, []string{"signer", "code"})
	}
	if r != nil {
		r.MustRegister(m.requests, m.latency, m.authFailures)
		if m.signerRequests != nil {
			r.MustRegister(m.signerRequests)
		}
	}
	return m
}

// observe counts one request. caller is nil when authentication failed.
// Every label value comes from a set meshca controls: the gRPC code, the
// name of the authenticator that succeeded, and the caller's cluster only
// when authentication established it and it is configured.
func (m *metrics) observe(caller *authn.Caller, err error, d time.Duration) {
	code := status.Code(err)
	authenticator, cluster := labelNone, labelUnknown
	if caller != nil {
		authenticator = labelOther
		if authenticators[caller.Authenticator] {
			authenticator = caller.Authenticator
		}
		if m.clusters[caller.Cluster] {
			cluster = caller.Cluster
		}
	}
	k := obsKey{code, authenticator, cluster}
	o, ok := m.observers.Load(k)
	if !ok {
		o, _ = m.observers.LoadOrStore(k, &observers{
			requests: m.requests.WithLabelValues(code.String(), authenticator, cluster),
			latency:  m.latency.WithLabelValues(code.String()),
		})
	}
	obs := o.(*observers)
	obs.requests.Inc()
	obs.latency.Observe(d.Seconds())
}

func (m *metrics) authFailed(reason string) {
	if !authReasons[reason] {
		reason = labelOther
	}
	m.authFailures.WithLabelValues(reason).Inc()
}

// signerObserve counts one request that selected a signer. signer is a
// configured name, "default" or "unknown": never the caller's string.
func (m *metrics) signerObserve(signer string, err error) {
	if m.signerRequests == nil {
		return
	}
	k := signerKey{status.Code(err), signer}
	c, ok := m.signerCounters.Load(k)
	if !ok {
		c, _ = m.signerCounters.LoadOrStore(k, m.signerRequests.WithLabelValues(signer, k.code.String()))
	}
	c.(prometheus.Counter).Inc()
}
