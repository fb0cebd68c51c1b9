package istio_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/istio"
)

// clusterEcho authenticates bearer token "good" as a caller of whatever
// cluster the clusterid header names, and fails "bad" with an unlisted
// reason: the worst an authenticator could hand the service.
type clusterEcho struct{}

func (clusterEcho) Authenticate(_ context.Context, c authn.Credentials) (*authn.Caller, error) {
	switch c.BearerToken {
	case "good":
		id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
		return &authn.Caller{Identity: id, Authenticator: "made\xffup", Cluster: c.ClusterID}, nil
	case "bad":
		return nil, &authn.Failure{Authenticator: "x", Reason: "reason-" + c.ClusterID, Message: "no"}
	}
	return nil, &authn.Failure{Authenticator: "chain", Reason: "no_credentials", Message: "none"}
}

// signNothing refuses every request like an engine that is not ready.
type signNothing struct{}

func (signNothing) Sign(context.Context, authority.Request) (*authority.Result, error) {
	return nil, caerr.New(caerr.Unavailable, "not_ready", "test signer")
}

// labelEnv is the service alone, called directly with incoming metadata,
// so that any bytes can reach it.
type labelEnv struct {
	svc *istio.Service
	reg *prometheus.Registry
}

func newLabelEnv(t *testing.T, clusters []string) *labelEnv {
	t.Helper()
	e := &labelEnv{reg: prometheus.NewRegistry()}
	e.svc = istio.New(istio.Options{
		Signer: signNothing{}, Authenticator: clusterEcho{}, Audit: audit.New(slog.New(slog.DiscardHandler)),
		Registerer: e.reg, Clusters: clusters,
	})
	return e
}

// labelValues returns the distinct values of label across the families of reg.
func labelValues(t *testing.T, e *labelEnv, family, label string) []string {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && !slices.Contains(out, l.GetValue()) {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestMetrics_CallerInputNeverBecomesALabel(t *testing.T) {
	e := newLabelEnv(t, []string{"Kubernetes", "remote-1"})
	call := func(token, cluster string) {
		md := metadata.Pairs("authorization", "Bearer "+token, "clusterid", cluster)
		require.NotPanics(t, func() {
			_, _ = e.svc.CreateCertificate(metadata.NewIncomingContext(context.Background(), md), request(t, nil, 0, nil))
		})
	}
	for i := range 50 {
		for _, tok := range []string{"good", "bad", "none"} {
			call(tok, fmt.Sprintf("attacker-%d", i))
		}
	}
	for _, tok := range []string{"good", "bad", "none"} {
		call(tok, "\xff\x80")
		call(tok, "Kubernetes")
		call(tok, "remote-1")
	}
	// Configured clusters plus "unknown"; only an authenticated caller of a
	// configured cluster is labelled with it.
	require.Equal(t, []string{"Kubernetes", "remote-1", "unknown"}, labelValues(t, e, "meshca_istio_requests_total", "cluster"))
	require.Equal(t, []string{"none", "other"}, labelValues(t, e, "meshca_istio_requests_total", "authenticator"))
	require.Equal(t, []string{"no_credentials", "other"}, labelValues(t, e, "meshca_authn_failures_total", "reason"))
}

func TestCreateCertificate_OverflowingValidityDurationIsTTLTooLong(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := spiffeID("default", "app")
	cert := e.clientCert(t, id)
	cl := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	for _, seconds := range []int64{
		math.MaxInt64,
		int64(math.MaxInt64/time.Second) + 1, // the first value whose nanoseconds overflow
		36028797019050368,                    // wraps to exactly 24h in int64 nanoseconds
	} {
		t.Run(fmt.Sprint(seconds), func(t *testing.T) {
			before := e.records(t)
			denied := strings.Count(e.auditLog(), `"reason":"ttl_too_long"`)
			csr, _ := ztunnelCSR(t, id)
			resp, err := cl.CreateCertificate(context.Background(), request(t, csr, seconds, nil))
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.Nil(t, resp)
			require.Equal(t, before, e.records(t), "a refused request must write nothing")
			require.Equal(t, denied+1, strings.Count(e.auditLog(), `"reason":"ttl_too_long"`))
		})
	}
	// Istio's semantics stay: zero and negative mean the default TTL.
	for _, seconds := range []int64{0, -1, math.MinInt64} {
		t.Run(fmt.Sprint(seconds), func(t *testing.T) {
			csr, _ := ztunnelCSR(t, id)
			resp, err := cl.CreateCertificate(context.Background(), request(t, csr, seconds, nil))
			require.NoError(t, err)
			leaf, _ := parseAsIstioAgent(t, resp.CertChain)
			require.Equal(t, 24*time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore))
		})
	}
}
