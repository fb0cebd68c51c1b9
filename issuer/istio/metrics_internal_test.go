package istio

import (
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/issuer/authn"
)

// BenchmarkObserve is the metrics cost of one successful request.
func BenchmarkObserve(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry(), []string{"Kubernetes", "remote"}, false)
	id, _ := url.Parse("spiffe://cluster.local/ns/bench/sa/app")
	caller := &authn.Caller{Identity: id, Authenticator: authn.ClientCertificate, Cluster: "Kubernetes"}
	b.ReportAllocs()
	for b.Loop() {
		m.observe(caller, nil, time.Millisecond)
	}
}

// BenchmarkRequester is the per-request requester string (the identity's
// string is computed once per request and shared with the rate limiter).
func BenchmarkRequester(b *testing.B) {
	id, _ := url.Parse("spiffe://cluster.local/ns/bench/sa/app")
	caller := &authn.Caller{Identity: id, Authenticator: authn.ClientCertificate, Cluster: "Kubernetes"}
	b.ReportAllocs()
	for b.Loop() {
		_ = requesterOf(caller, id.String())
	}
}

// requesterOf is what authn.Caller's String gives, behind "istio:".
func TestRequesterOf_IsIstioColonTheCallersString(t *testing.T) {
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	for _, c := range []*authn.Caller{
		{Identity: id, Authenticator: authn.ClientCertificate},
		{Identity: id, Authenticator: authn.TokenReview, Cluster: "Kubernetes"},
	} {
		require.Equal(t, "istio:"+c.String(), requesterOf(c, id.String()))
	}
}

// The cached observers count into the same series as WithLabelValues.
func TestObserve_CachedObserversCountTheRightSeries(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), []string{"Kubernetes"}, false)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	c := &authn.Caller{Identity: id, Authenticator: authn.ClientCertificate, Cluster: "Kubernetes"}
	for range 3 {
		m.observe(c, nil, time.Millisecond)
	}
	m.observe(c, status.Error(codes.PermissionDenied, "no"), time.Millisecond)
	m.observe(nil, status.Error(codes.Unauthenticated, "no"), time.Millisecond)
	require.Equal(t, 3.0, testutil.ToFloat64(m.requests.WithLabelValues("OK", authn.ClientCertificate, "Kubernetes")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("PermissionDenied", authn.ClientCertificate, "Kubernetes")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("Unauthenticated", labelNone, labelUnknown)))
	require.Equal(t, 3, testutil.CollectAndCount(m.requests))
	require.Equal(t, 3, testutil.CollectAndCount(m.latency))
}
