package istio_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/issuer/ratelimit"
)

// gatewaySigner is a dedicated signer: classical leaves (the harness's CA is
// catalyst, whose default leaf is catalyst), at most 2h, DNS names for the
// gateways of namespace gw, and only for that namespace's accounts when
// restricted is set.
func gatewaySigner(restricted bool) config.CertSignerConfig {
	s := config.CertSignerConfig{
		Name: "gateways", Profile: profile.Classical, MaxCertTTL: config.Duration{Duration: 2 * time.Hour},
		Policies: []config.PolicyConfig{{
			Name: "gw-dns", Identities: []string{"spiffe://cluster.local/ns/gw/sa/*"}, DNSNames: []string{"*.gw.example.com"},
		}},
	}
	if restricted {
		s.Identities = []string{"spiffe://cluster.local/ns/gw/sa/*"}
	}
	return s
}

// signerRequests is meshca_istio_cert_signer_requests_total{signer, code}.
func (e *env) signerRequests(t *testing.T, signer string, code codes.Code) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "meshca_istio_cert_signer_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["signer"] == signer && labels["code"] == code.String() {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// signerLabels are every value of the signer label that was exported.
func (e *env) signerLabels(t *testing.T) []string {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	var out []string
	for _, mf := range mfs {
		if mf.GetName() == "meshca_istio_cert_signer_requests_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "signer" {
						out = append(out, l.GetValue())
					}
				}
			}
		}
	}
	return out
}

func (e *env) issuances(t *testing.T) []store.Issuance {
	t.Helper()
	var out []store.Issuance
	require.NoError(t, e.rt.Store.ListIssuances(context.Background(), func(r store.Issuance) bool {
		if r.Identity != "spiffe://cluster.local/ns/default/sa/app" || !strings.HasPrefix(r.Requester, "istio:") {
			return true
		}
		out = append(out, r)
		return true
	}))
	return out
}

func isCatalyst(c *x509.Certificate) bool {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oid.AltSignatureValue) {
			return true
		}
	}
	return false
}

// TestCertSigner_UnknownIsRefusedBeforeTheCSRIsRead: a CertSigner that is
// not configured is refused with InvalidArgument even with a CSR that is
// not one (nothing read it), nothing is recorded, the audit line carries the
// stable reason and a bounded quote of the name, and the metric counts it
// as "unknown", never under the caller's string.
func TestCertSigner_UnknownIsRefusedBeforeTheCSRIsRead(t *testing.T) {
	e := newEnv(t, envOptions{certSigners: []config.CertSignerConfig{gatewaySigner(false)}})
	id := spiffeID("default", "app")
	cert := e.clientCert(t, id)
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	before := e.records(t)

	long := strings.Repeat("x", 5000)
	for _, name := range []string{"nope", long, "gateways\n"} {
		_, err := c.CreateCertificate(context.Background(), request(t, []byte("not a CSR"), 3600, map[string]any{"CertSigner": name}))
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "is not configured at this CA")
		require.NotContains(t, status.Convert(err).Message(), "CSR")
		require.Less(t, len(status.Convert(err).Message()), 500, "the caller's name is quoted within a bound")
	}
	require.Equal(t, before, e.records(t), "nothing recorded")
	log := e.auditLog()
	require.Equal(t, 3, strings.Count(log, `"reason":"unknown_cert_signer"`), log)
	require.NotContains(t, log, long[:300], "the audit line quotes a bounded prefix")
	require.Equal(t, 3.0, e.signerRequests(t, "unknown", codes.InvalidArgument))
	require.ElementsMatch(t, []string{"unknown"}, e.signerLabels(t))
}

// TestCertSigner_ConfiguredSignerGetsItsProfileAndTTL: a configured signer
// issues with its profile (classical from a catalyst CA), its maximum
// lifetime (the default 24h is lowered to it; above it is refused as over
// long) and its own exceptions; "" still gets the default signer.
func TestCertSigner_ConfiguredSignerGetsItsProfileAndTTL(t *testing.T) {
	e := newEnv(t, envOptions{certSigners: []config.CertSignerConfig{gatewaySigner(false)}})
	id := spiffeID("default", "app")
	cert := e.clientCert(t, id)
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })

	csr, _ := ztunnelCSR(t, id)
	resp, err := c.CreateCertificate(context.Background(), request(t, csr, 0, map[string]any{"CertSigner": "gateways"}))
	require.NoError(t, err)
	leaf, _ := parseAsIstioAgent(t, resp.CertChain)
	require.Equal(t, []*url.URL{mustURL(t, id)}, leaf.URIs)
	require.False(t, isCatalyst(leaf), "the gateways signer issues classical leaves")
	require.Equal(t, 2*time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore), "the default lifetime is lowered to the signer's maximum")

	_, err = c.CreateCertificate(context.Background(), request(t, csr, 3*3600, map[string]any{"CertSigner": "gateways"}))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "above the signer's maximum: %v", err)

	resp, err = c.CreateCertificate(context.Background(), request(t, csr, 0, map[string]any{"CertSigner": ""}))
	require.NoError(t, err)
	leaf, _ = parseAsIstioAgent(t, resp.CertChain)
	require.True(t, isCatalyst(leaf), "the default signer issues the CA's default leaf")
	require.Equal(t, 24*time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore))

	recs := e.issuances(t)
	require.Len(t, recs, 2)
	byProfile := map[string]string{}
	for _, r := range recs {
		byProfile[r.Profile] = r.Requester
	}
	require.Equal(t, "istio:client_certificate:"+id+" signer:gateways", byProfile[string(profile.Classical)])
	require.Equal(t, "istio:client_certificate:"+id, byProfile[string(profile.Catalyst)])

	require.Equal(t, 1.0, e.signerRequests(t, "gateways", codes.OK))
	require.Equal(t, 1.0, e.signerRequests(t, "gateways", codes.InvalidArgument))
	require.Equal(t, 1.0, e.signerRequests(t, "default", codes.OK))
}

// TestCertSigner_ExceptionsAreTheSignersOwn: the gateways signer's policy
// lets ns/gw accounts ask for DNS names; the default signer, without
// issuance.policies, refuses the same CSR.
func TestCertSigner_ExceptionsAreTheSignersOwn(t *testing.T) {
	e := newEnv(t, envOptions{certSigners: []config.CertSignerConfig{gatewaySigner(false)}})
	id := spiffeID("gw", "ingress")
	cert := e.clientCert(t, id)
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	csr := csrFor(t, k, &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, id)}, DNSNames: []string{"a.gw.example.com"}})

	_, err = c.CreateCertificate(context.Background(), request(t, csr, 3600, map[string]any{"CertSigner": ""}))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)

	resp, err := c.CreateCertificate(context.Background(), request(t, csr, 3600, map[string]any{"CertSigner": "gateways"}))
	require.NoError(t, err)
	leaf, _ := parseAsIstioAgent(t, resp.CertChain)
	require.Equal(t, []string{"a.gw.example.com"}, leaf.DNSNames)
	require.Equal(t, []*url.URL{mustURL(t, id)}, leaf.URIs)
}

// TestCertSigner_IdentitiesRestrictTheSigner: a signer with identities
// refuses every other identity with PermissionDenied before the CSR is read,
// and records nothing.
func TestCertSigner_IdentitiesRestrictTheSigner(t *testing.T) {
	e := newEnv(t, envOptions{certSigners: []config.CertSignerConfig{gatewaySigner(true)}})
	id := spiffeID("default", "app")
	cert := e.clientCert(t, id)
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	before := e.records(t)

	_, err := c.CreateCertificate(context.Background(), request(t, []byte("not a CSR"), 3600, map[string]any{"CertSigner": "gateways"}))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Equal(t, `CertSigner "gateways" does not issue for `+id, status.Convert(err).Message())
	require.Equal(t, before, e.records(t))
	require.Contains(t, e.auditLog(), `"reason":"cert_signer_not_allowed"`)
	require.Equal(t, 1.0, e.signerRequests(t, "gateways", codes.PermissionDenied))

	gw := spiffeID("gw", "ingress")
	gc := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{e.clientCert(t, gw)} })
	csr, _ := ztunnelCSR(t, gw)
	_, err = gc.CreateCertificate(context.Background(), request(t, csr, 3600, map[string]any{"CertSigner": "gateways"}))
	require.NoError(t, err)
}

// TestCertSigner_IgnoredWithoutCertSigners: without
// authentication.certSigners any CertSigner is ignored, as before meshca
// honoured it: the request gets the default signer, and no signer metric is
// exported.
func TestCertSigner_IgnoredWithoutCertSigners(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := spiffeID("default", "app")
	cert := e.clientCert(t, id)
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	csr, _ := ztunnelCSR(t, id)
	resp, err := c.CreateCertificate(context.Background(), request(t, csr, 0, map[string]any{"CertSigner": "clusterissuers.cert-manager.io/istio-system"}))
	require.NoError(t, err)
	leaf, _ := parseAsIstioAgent(t, resp.CertChain)
	require.True(t, isCatalyst(leaf))
	require.Equal(t, 24*time.Hour+2*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore))
	require.Empty(t, e.signerLabels(t))
	require.Equal(t, 0, testutil.CollectAndCount(e.reg, "meshca_istio_cert_signer_requests_total"))
}

// recordingImpersonator grants every impersonation and counts its calls.
type recordingImpersonator struct{ calls atomic.Int32 }

func (r *recordingImpersonator) Authorize(_ context.Context, _ *authn.Caller, requested string) (*url.URL, error) {
	r.calls.Add(1)
	return url.Parse(requested)
}

// TestCertSigner_OrderOfChecks: authentication comes first (an
// unauthenticated caller naming an unknown signer is Unauthenticated and
// counted under no signer); an unknown signer is refused before
// impersonation and the rate limit run (the impersonator is not asked, the
// caller's only token is left); a signer's identities are checked against
// the impersonated identity, not the node agent's.
func TestCertSigner_OrderOfChecks(t *testing.T) {
	imp := &recordingImpersonator{}
	e := newEnv(t, envOptions{
		certSigners:  []config.CertSignerConfig{gatewaySigner(true)},
		impersonator: imp,
		limiter:      ratelimit.New(ratelimit.Options{PerIdentityQPS: 0.001, PerIdentityBurst: 1}),
	})
	anon := e.dial(t, nil)
	_, err := anon.CreateCertificate(context.Background(), request(t, []byte("x"), 0, map[string]any{"CertSigner": "nope"}))
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Empty(t, e.signerLabels(t), "an unauthenticated caller selects no signer")

	node := spiffeID("istio-system", "ztunnel")
	c := e.dial(t, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{e.clientCert(t, node)} })
	gw := spiffeID("gw", "ingress")
	_, err = c.CreateCertificate(context.Background(), request(t, []byte("x"), 0, map[string]any{"CertSigner": "nope", "ImpersonatedIdentity": gw}))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Zero(t, imp.calls.Load(), "the impersonator was not asked for an unknown signer")

	app := spiffeID("default", "app")
	_, err = c.CreateCertificate(context.Background(), request(t, []byte("x"), 0, map[string]any{"CertSigner": "gateways", "ImpersonatedIdentity": app}))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Equal(t, `CertSigner "gateways" does not issue for `+app, status.Convert(err).Message(), "the impersonated identity is the one checked")

	csr, _ := ztunnelCSR(t, gw)
	resp, err := c.CreateCertificate(context.Background(), request(t, csr, 0, map[string]any{"CertSigner": "gateways", "ImpersonatedIdentity": gw}))
	require.NoError(t, err, "the refusals above took none of the rate limit's single token for %s", gw)
	leaf, _ := parseAsIstioAgent(t, resp.CertChain)
	require.Equal(t, []*url.URL{mustURL(t, gw)}, leaf.URIs)
	require.Equal(t, int32(2), imp.calls.Load())
}
