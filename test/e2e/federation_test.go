package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/root"
)

// partnerEndpoint is a foreign trust domain's SPIFFE bundle endpoint
// (https_web), served by go-spiffe's own handler.
type partnerEndpoint struct {
	td  spiffeid.TrustDomain
	srv *httptest.Server
	mu  sync.Mutex
	b   *spiffebundle.Bundle
}

func (p *partnerEndpoint) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.GetBundleForTrustDomain(td)
}

func (p *partnerEndpoint) serve(seq uint64, roots ...*x509.Certificate) {
	b := spiffebundle.FromX509Authorities(p.td, roots)
	b.SetSequenceNumber(seq)
	b.SetRefreshHint(time.Second)
	p.mu.Lock()
	p.b = b
	p.mu.Unlock()
}

func caCert(t *testing.T, cn, uri string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	if uri != "" {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// metric reads one sample of meshca's /metrics.
func metric(t *testing.T, s *server, name, labels string) (float64, bool) {
	t.Helper()
	_, body := get(t, "http://"+s.ops+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+labels) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v, true
}

// TestServe_FederatesAForeignTrustDomain runs the binary against a real
// apiserver as the meshca ServiceAccount of deploy/rbac: a foreign trust
// domain's roots appear as a labelled ClusterTrustBundle, follow the
// foreign bundle, survive a refused (wrong trust domain) answer, turn stale
// in the metrics, are printed by the snippet command while serve runs, and
// disappear when the trust domain is removed from the configuration.
func TestServe_FederatesAForeignTrustDomain(t *testing.T) {
	env, kubeconfig := meshcaInCluster(t)
	ctx := context.Background()
	ep := &partnerEndpoint{td: spiffeid.RequireTrustDomainFromString("partner.example")}
	rootA, rootB := caCert(t, "partner A", "spiffe://partner.example"), caCert(t, "partner B", "")
	ep.serve(1, rootA)
	h, err := gofed.NewHandler(ep.td, ep)
	require.NoError(t, err)
	ep.srv = httptest.NewTLSServer(h)
	t.Cleanup(ep.srv.Close)

	dir := initCA(t)
	caFile := filepath.Join(t.TempDir(), "web-roots.pem")
	require.NoError(t, os.WriteFile(caFile, root.EncodePEM(ep.srv.Certificate()), 0o600))
	cfgPath := filepath.Join(dir, "meshca.yaml")
	base, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	base = append(base, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n")...)
	federated := append(append([]byte(nil), base...), fmt.Appendf(nil, `federation:
  trustDomains:
    - trustDomain: partner.example
      bundleEndpointURL: %s
      profile: https_web
      caFile: %s
  minRefresh: 1s
  maxRefresh: 2s
  staleAfter: 4s
`, ep.srv.URL, caFile)...)
	require.NoError(t, os.WriteFile(cfgPath, federated, 0o644))

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	const name = "meshca-federated.partner.example"
	wantBundle := func(roots ...*x509.Certificate) func() bool {
		return func() bool {
			b, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
			return err == nil && b.Labels["meshca.io/federated-trust-domain"] == "partner.example" &&
				b.Labels["app.kubernetes.io/managed-by"] == "meshca" && b.Spec.SignerName == "" &&
				b.Spec.TrustBundle == string(root.EncodePEM(roots...))
		}
	}
	require.Eventually(t, wantBundle(rootA), 15*time.Second, 50*time.Millisecond, "federated bundle not published:\n%s", s.logs())

	// The foreign trust domain adds a root.
	ep.serve(2, rootA, rootB)
	require.Eventually(t, wantBundle(rootA, rootB), 15*time.Second, 50*time.Millisecond, "federated bundle did not follow:\n%s", s.logs())

	// The snippet, while serve runs.
	out := meshca(t, "federation", "snippet", "--dir", dir)
	require.Contains(t, out, "  - spiffeBundleUrl: "+ep.srv.URL+"\n    trustDomains:\n    - partner.example\n")
	out = meshca(t, "federation", "snippet", "--dir", dir, "--pem")
	require.Contains(t, out, "# partner.example: 2 roots, sequence 2, fetched ")
	require.Contains(t, out, strings.ReplaceAll(strings.TrimSpace(string(root.EncodePEM(rootB))), "\n", "\n      "))

	// Another trust domain's bundle is refused; the published one stays.
	before, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	ep.serve(3, caCert(t, "other", "spiffe://other.example"))
	const refused = `{outcome="wrong_trust_domain",trust_domain="partner.example"}`
	require.Eventually(t, func() bool { v, ok := metric(t, s, "meshca_federation_fetch_total", refused); return ok && v >= 1 },
		15*time.Second, 50*time.Millisecond, "no refused fetch:\n%s", s.logs())
	// Refused for longer than staleAfter: stale in the metrics.
	require.Eventually(t, func() bool {
		age, ok := metric(t, s, "meshca_federation_bundle_age_seconds", `{trust_domain="partner.example"}`)
		return ok && age > 4
	}, 15*time.Second, 100*time.Millisecond)
	// meshca's own alert, kept in the store by the Lease holder.
	require.Eventually(t, func() bool {
		return strings.Contains(meshca(t, "status", "--dir", dir, "-o", "json"), `"FederatedBundleStale"`)
	}, 15*time.Second, 200*time.Millisecond, "no FederatedBundleStale alert:\n%s", s.logs())
	stale, ok := metric(t, s, "meshca_federation_stale_after_seconds", "")
	require.True(t, ok)
	require.Equal(t, 4.0, stale)
	seq, ok := metric(t, s, "meshca_federation_bundle_sequence", `{trust_domain="partner.example"}`)
	require.True(t, ok)
	require.Equal(t, 2.0, seq, "the refused bundle's sequence is not taken")
	after, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, before.ResourceVersion, after.ResourceVersion, "a refused bundle changes nothing")

	// The trust domain is removed from the configuration: after a restart
	// (a clean stop releases the Lease) the bundle is deleted.
	stopServe(t, s)
	require.NoError(t, os.WriteFile(cfgPath, base, 0o644))
	s2 := startServe(t, dir)
	s2.waitReady(t, 10*time.Second)
	require.Eventually(t, func() bool {
		_, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 15*time.Second, 50*time.Millisecond, "federated bundle not deleted:\n%s", s2.logs())
}
