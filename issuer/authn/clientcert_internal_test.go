package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fixedTrust struct{ roots, inters *x509.CertPool }

func (f fixedTrust) Roots() *x509.CertPool         { return f.roots }
func (f fixedTrust) Intermediates() *x509.CertPool { return f.inters }

// A certificate that fails verification is remembered too: sending it
// again costs no further signature check.
func TestClientCert_FailedVerificationIsRemembered(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stranger"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	stranger, _ := x509.ParseCertificate(der)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/app")
	der, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(5), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{id}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, stranger, key.Public(), key)
	require.NoError(t, err)
	leaf, _ := x509.ParseCertificate(der)

	a := &ClientCert{Trust: fixedTrust{roots: x509.NewCertPool(), inters: x509.NewCertPool()}, TrustDomain: "cluster.local"}
	verifications := 0
	a.verifyHook = func() { verifications++ }
	for range 5 {
		_, err := a.Authenticate(context.Background(), Credentials{PeerCertificates: []*x509.Certificate{leaf}})
		require.Equal(t, "untrusted_certificate", ReasonOf(err))
	}
	require.Equal(t, 1, verifications)
}
