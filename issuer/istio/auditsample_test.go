package istio_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/issuer/ratelimit"
)

// Anyone who reaches the port can be refused once per request: those audit
// lines are sampled per reason, while the metric counts every refusal and
// the next line written says how many were left out.
func TestCreateCertificate_UnauthenticatedDenialsAreSampledInTheAuditLog(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	e := newEnv(t, envOptions{auditClock: clk})
	cl := e.dial(t, nil)
	csr, _ := ztunnelCSR(t, spiffeID("default", "app"))
	req := request(t, csr, 0, nil)
	const sent = 200
	for range sent {
		_, err := cl.CreateCertificate(context.Background(), req)
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	}
	lines := func() int { return strings.Count(e.auditLog(), `"reason":"authn_no_credentials"`) }
	require.Equal(t, audit.UnauthenticatedBurst, lines(), "a burst of anonymous refusals writes at most the burst")
	require.Equal(t, float64(sent), counterWith(t, e, "meshca_authn_failures_total", "reason", "no_credentials"))

	clk.Step(time.Second)
	_, err := cl.CreateCertificate(context.Background(), req)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Equal(t, audit.UnauthenticatedBurst+1, lines())
	require.Contains(t, e.auditLog(), `"suppressed":150`, "the next line counts what was left out")
}

// An authenticated workload past its rate limit is refused at no cost to
// itself, as fast as it can send: writing a line for each refusal would let
// one compromised pod rotate its own earlier issuances out of a size-bound
// audit file. Those lines are sampled per caller and reason; the metric
// counts every refusal, and the next line written says how many were left
// out. Another caller has its own sample, and the engine's own refusals
// stay whole.
func TestCreateCertificate_ACallersRateLimitedRefusalsAreSampledInTheAuditLog(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	e := newEnv(t, envOptions{auditClock: clk, limiter: ratelimit.New(ratelimit.Options{PerIdentityQPS: 0.001, PerIdentityBurst: 1})})
	flooder, other := spiffeID("default", "flooder"), spiffeID("default", "other")
	dialAs := func(id string) *client {
		return e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{e.clientCert(t, id)} })
	}
	cl := dialAs(flooder)
	csr, _ := ztunnelCSR(t, flooder)
	req := request(t, csr, 0, nil)
	_, err := cl.CreateCertificate(context.Background(), req)
	require.NoError(t, err, "the burst of one")
	lines := func(id string) int {
		return strings.Count(e.auditLog(), `"identity":"`+id+`","requester":"istio:client_certificate:`+id+`","profile":"","reason":"rate_limited"`)
	}

	const sent = 200
	for range sent {
		_, err := cl.CreateCertificate(context.Background(), req)
		require.Equal(t, codes.ResourceExhausted, status.Code(err))
	}
	require.Equal(t, audit.CallerDenialBurst, lines(flooder), "a burst of one caller's refusals writes at most the burst")
	require.Equal(t, float64(sent), testutil.ToFloat64(metricVec(t, e, "meshca_istio_requests_total", "ResourceExhausted")))

	clk.Step(time.Second)
	_, err = cl.CreateCertificate(context.Background(), req)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Equal(t, audit.CallerDenialBurst+1, lines(flooder))
	require.Contains(t, e.auditLog(), `"reason":"rate_limited","message":"rate limit for `+flooder+` exceeded; retry later","suppressed":190}`,
		"the next line counts what was left out")

	// Another caller's refusals are sampled on their own.
	cl2 := dialAs(other)
	csr2, _ := ztunnelCSR(t, other)
	req2 := request(t, csr2, 0, nil)
	_, err = cl2.CreateCertificate(context.Background(), req2)
	require.NoError(t, err)
	_, err = cl2.CreateCertificate(context.Background(), req2)
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Equal(t, 1, lines(other))
	require.Contains(t, e.auditLog(), `"reason":"rate_limited","message":"rate limit for `+other+` exceeded; retry later","suppressed":0}`)
}

// counterWith is the value of the counter of family whose label has value.
func counterWith(t *testing.T, e *env, family, label, value string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", family, label, value)
	return 0
}
