package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/jose"

	"github.com/meshca/meshca/issuer/authn"
)

// clientCertWithURI issues a client certificate carrying uri from a fresh CA.
func clientCertWithURI(t *testing.T, uri *url.URL) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	ca, caKey := throwawayCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(78), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{uri}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, key.Public(), caKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return leaf, pool
}

// TestClientCert_IdentityFollowsTheSPIFFESpec: the certificate's URI SAN is
// parsed by the SPIFFE ID rules (SPIFFE-ID §2) and must name a workload
// (non-root path, X509-SVID §3.1), not just have the right scheme and host.
func TestClientCert_IdentityFollowsTheSPIFFESpec(t *testing.T) {
	ok, pool := clientCertWithURI(t, &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/default/sa/app"})
	a := &authn.ClientCert{Trust: &pools{roots: pool, inters: x509.NewCertPool()}, TrustDomain: trustDomain, VerifiedTTL: -1}
	c, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{ok}})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/default/sa/app", c.Identity.String())

	for name, u := range map[string]*url.URL{
		"no path":        {Scheme: "spiffe", Host: trustDomain},
		"root path":      {Scheme: "spiffe", Host: trustDomain, Path: "/"},
		"empty segment":  {Scheme: "spiffe", Host: trustDomain, Path: "/ns//sa/app"},
		"dot-dot":        {Scheme: "spiffe", Host: trustDomain, Path: "/ns/../sa/app"},
		"space":          {Scheme: "spiffe", Host: trustDomain, Path: "/ns/a b/sa/app"},
		"percent-escape": {Scheme: "spiffe", Host: trustDomain, Path: "/ns/a/b", RawPath: "/ns/a%2Fb"},
		"query":          {Scheme: "spiffe", Host: trustDomain, Path: "/ns/a", RawQuery: "x=1"},
		"fragment":       {Scheme: "spiffe", Host: trustDomain, Path: "/ns/a", Fragment: "x"},
	} {
		t.Run(name, func(t *testing.T) {
			leaf, pool := clientCertWithURI(t, u)
			a := &authn.ClientCert{Trust: &pools{roots: pool, inters: x509.NewCertPool()}, TrustDomain: trustDomain, VerifiedTTL: -1}
			_, err := a.Authenticate(context.Background(), authn.Credentials{PeerCertificates: []*x509.Certificate{leaf}})
			requireFailure(t, err, "no_identity")
		})
	}
}

// TestJWT_IdentityFollowsTheSPIFFESpec: the templated identity obeys the
// SPIFFE ID length limit (SPIFFE-ID §2.3), and only an identity whose
// namespace and service account are Kubernetes names yields a Namespace
// and ServiceAccount.
func TestJWT_IdentityFollowsTheSPIFFESpec(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	_, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"sub": strings.Repeat("a", 2100)})))
	requireFailure(t, err, authn.ReasonNoIdentity)

	caller, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"namespace": "Payments"})))
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/Payments/sa/checkout", caller.Identity.String())
	require.Empty(t, caller.Namespace, "Payments is not a Kubernetes namespace name")
	require.Empty(t, caller.ServiceAccount)
}

// throwawayCA is a self-signed P-256 CA valid for an hour either side of now.
func throwawayCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca, caKey
}
