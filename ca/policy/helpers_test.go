package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testTrustDomain = "cluster.local"

// testNow is the injected clock of every policy test. It is whole-second
// aligned, like every time in an X.509 certificate.
var testNow = time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)

var (
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

	rsa2048Once sync.Once
	rsa2048Key  *rsa.PrivateKey
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// workloadID is the SPIFFE ID istio-agent and ztunnel ask for.
func workloadID(t testing.TB) *url.URL {
	return mustURL(t, "spiffe://cluster.local/ns/default/sa/bookinfo")
}

// rsa2048 returns one RSA-2048 key shared by the tests (generation is slow
// under -race, and the tests never depend on the key being fresh).
func rsa2048(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsa2048Once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsa2048Key = k
	})
	return rsa2048Key
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(t, err)
	return k
}

func edKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

// sanExtension encodes a subjectAltName extension holding uris, the way
// istio-agent builds it (critical) or ztunnel (non-critical).
func sanExtension(t testing.TB, critical bool, uris ...string) pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	v, err := asn1.Marshal(names)
	require.NoError(t, err)
	return pkix.Extension{Id: oidSAN, Critical: critical, Value: v}
}

// csrDER signs tmpl with key and returns the DER CSR.
func csrDER(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return der
}

// parsedCSR signs tmpl with key and parses it back with ParseCSR.
func parsedCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	csr, err := ParseCSR(csrDER(t, key, tmpl))
	require.NoError(t, err)
	return csr
}

// istioAgentCSR is shaped like istio-agent's default CSR: RSA-2048, subject
// O="" and one critical URI SAN.
func istioAgentCSR(t testing.TB, id string) *x509.CertificateRequest {
	t.Helper()
	return parsedCSR(t, rsa2048(t), &x509.CertificateRequest{
		Subject:         pkix.Name{Organization: []string{""}},
		ExtraExtensions: []pkix.Extension{sanExtension(t, true, id)},
	})
}

// ztunnelCSR is shaped like ztunnel's CSR: ECDSA P-256, empty subject and
// one non-critical URI SAN.
func ztunnelCSR(t testing.TB, id string) *x509.CertificateRequest {
	t.Helper()
	return parsedCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{
		ExtraExtensions: []pkix.Extension{sanExtension(t, false, id)},
	})
}

// csrWith returns a P-256 CSR for the workload identity, changed by mutate.
func csrWith(t testing.TB, mutate func(*x509.CertificateRequest)) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{workloadID(t)}}
	if mutate != nil {
		mutate(tmpl)
	}
	return parsedCSR(t, ecKey(t, elliptic.P256()), tmpl)
}

// issuer is a signing intermediate with a known validity window.
type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newIssuer returns a throwaway self-signed signing CA valid from notBefore
// to notAfter. (The policy package sits below ca/root, so it builds its own.)
func newIssuer(t testing.TB, notBefore, notAfter time.Time) issuer {
	t.Helper()
	key := ecKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "meshca test intermediate"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return issuer{cert: cert, key: key}
}

// validIssuer is valid for a year either side of testNow.
func validIssuer(t testing.TB) issuer {
	return newIssuer(t, testNow.Add(-365*24*time.Hour), testNow.Add(365*24*time.Hour))
}

// sign turns a template from the engine into a parsed certificate, exactly
// as the signing engine does.
func (is issuer) sign(t testing.TB, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.cert, tmpl.PublicKey, is.key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func testEngine(mutate ...func(*Options)) *Engine {
	o := Options{
		TrustDomain: testTrustDomain,
		DefaultTTL:  24 * time.Hour,
		MaxTTL:      90 * 24 * time.Hour,
		Now:         func() time.Time { return testNow },
	}
	for _, m := range mutate {
		m(&o)
	}
	return New(o)
}

func urls(us ...*url.URL) []*url.URL { return us }

func pemCSR(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
