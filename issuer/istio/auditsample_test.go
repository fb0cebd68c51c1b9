package istio_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/audit"
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
