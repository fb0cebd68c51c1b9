package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

var bundleTD = spiffeid.RequireTrustDomainFromString("cluster.local")

// bundleURL is the https URL of s's SPIFFE bundle endpoint at path, from
// the address it logged.
func bundleURL(t *testing.T, s *server, path string) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		sc := bufio.NewScanner(strings.NewReader(s.logs()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev struct{ Msg, Address string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Msg == "serving the SPIFFE bundle endpoint" {
				addr = ev.Address
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "no bundle endpoint address:\n%s", s.logs())
	return "https://" + addr + path
}

// requireFetched checks a bundle fetched by go-spiffe: exactly the roots
// want in order, sequence seq, refresh hint hint.
func requireFetched(t *testing.T, b *spiffebundle.Bundle, seq uint64, hint time.Duration, want ...*x509.Certificate) {
	t.Helper()
	got := b.X509Authorities()
	require.Len(t, got, len(want))
	for i := range want {
		require.True(t, want[i].Equal(got[i]), "authority %d", i)
	}
	n, ok := b.SequenceNumber()
	require.True(t, ok)
	require.Equal(t, seq, n)
	h, ok := b.RefreshHint()
	require.True(t, ok)
	require.Equal(t, hint, h)
}

// TestServe_BundleEndpointHTTPSSPIFFE: the built binary serves the trust
// domain's SPIFFE bundle with an X.509-SVID it issued itself; go-spiffe's
// federation client, pinning the endpoint's SPIFFE ID with root A as its
// bootstrap bundle, fetches A at sequence 1. A root rotation to B
// publishes A and B at sequence 2, and a restart serves them at 2 again.
func TestServe_BundleEndpointHTTPSSPIFFE(t *testing.T) {
	dir, bDir := initCA(t), initCA(t)
	appendYAML(t, dir, "bundleEndpoint:\n  address: 127.0.0.1:0\n  profile: https_spiffe\n  refreshHint: 42s\n")
	aPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	bPEM, err := os.ReadFile(filepath.Join(bDir, "root-cert.pem"))
	require.NoError(t, err)
	rootA, rootB := splitPEM(t, string(aPEM))[0], splitPEM(t, string(bPEM))[0]
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/meshca")
	auth := federation.WithSPIFFEAuth(x509bundle.FromX509Authorities(bundleTD, []*x509.Certificate{rootA}), id)
	ctx := t.Context()

	s := startServe(t, dir)
	url := bundleURL(t, s, "/")
	b, err := federation.FetchBundle(ctx, bundleTD, url, auth)
	require.NoError(t, err, s.logs())
	requireFetched(t, b, 1, 42*time.Second, rootA)
	_, err = federation.FetchBundle(ctx, bundleTD, url,
		federation.WithSPIFFEAuth(x509bundle.FromX509Authorities(bundleTD, []*x509.Certificate{rootA}), spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/other")))
	require.ErrorContains(t, err, "unexpected ID")

	meshca(t, "rotate", "root", "--dir", dir, "--new-root-cert", filepath.Join(bDir, "root-cert.pem"), "--new-root-key", filepath.Join(bDir, "root-key.pem"), "--new-root-pq-key", filepath.Join(bDir, "root-pq-key.pem"))
	require.Eventually(t, func() bool {
		b, err = federation.FetchBundle(ctx, bundleTD, url, auth)
		return err == nil && len(b.X509Authorities()) == 2
	}, 20*time.Second, 50*time.Millisecond, "A+B not served:\n%s", s.logs())
	requireFetched(t, b, 2, 42*time.Second, rootA, rootB)

	stopServe(t, s)
	s = startServe(t, dir)
	url = bundleURL(t, s, "/")
	b, err = federation.FetchBundle(ctx, bundleTD, url, auth)
	require.NoError(t, err, s.logs())
	requireFetched(t, b, 2, 42*time.Second, rootA, rootB)
	_, body := get(t, "http://"+s.ops+"/metrics")
	require.Contains(t, body, "meshca_bundle_endpoint_sequence 2\n")
}

// TestServe_BundleEndpointHTTPSWeb: with an operator's Web-PKI
// certificate the endpoint serves the bundle to go-spiffe's client that
// trusts that Web PKI, and serves a replaced certificate after the next
// check of the files.
func TestServe_BundleEndpointHTTPSWeb(t *testing.T) {
	dir := initCA(t)
	web := newE2EWebPKI(t)
	web.issue(t, "bundle one")
	appendYAML(t, dir, "bundleEndpoint:\n  address: 127.0.0.1:0\n  path: /trust/bundle.json\n  https_web:\n    certFile: "+web.certFile+
		"\n    keyFile: "+web.keyFile+"\n    reloadInterval: 1s\n")
	aPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	rootA := splitPEM(t, string(aPEM))[0]

	s := startServe(t, dir)
	url := bundleURL(t, s, "/trust/bundle.json")
	b, err := federation.FetchBundle(t.Context(), bundleTD, url, federation.WithWebPKIRoots(web.pool))
	require.NoError(t, err, s.logs())
	requireFetched(t, b, 1, 5*time.Minute, rootA)

	servedCN := func() string {
		c, err := tls.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(url, "/trust/bundle.json"), "https://"), &tls.Config{RootCAs: web.pool, ServerName: "localhost"})
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	require.Equal(t, "bundle one", servedCN())
	web.issue(t, "bundle two")
	require.Eventually(t, func() bool { return servedCN() == "bundle two" }, 20*time.Second, 50*time.Millisecond, s.logs())
	// The reload is counted after the new certificate is in use.
	s.waitMetrics(t, 5*time.Second, map[string]float64{
		`meshca_bundle_endpoint_requests_total{outcome="ok"}`:         1,
		`meshca_bundle_endpoint_cert_reloads_total{result="success"}`: 1,
	})
}

// e2eWebPKI is an operator's Web PKI: a CA, and server certificates for
// localhost and 127.0.0.1 written to certFile and keyFile.
type e2eWebPKI struct {
	pool              *x509.CertPool
	ca                *x509.Certificate
	caKey             *ecdsa.PrivateKey
	certFile, keyFile string
}

func newE2EWebPKI(t *testing.T) *e2eWebPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "web pki root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	w := &e2eWebPKI{pool: x509.NewCertPool(), ca: ca, caKey: key}
	w.pool.AddCert(ca)
	d := t.TempDir()
	w.certFile, w.keyFile = filepath.Join(d, "tls.crt"), filepath.Join(d, "tls.key")
	return w
}

// issue writes a new key and a certificate with common name cn; the key
// first, then the certificate, as a rotating operator might.
func (w *e2eWebPKI) issue(t *testing.T, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)},
		w.ca, key.Public(), w.caKey)
	require.NoError(t, err)
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(w.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600))
	require.NoError(t, os.WriteFile(w.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
}

// TestHA_BothReplicasServeTheBundleWithOneSequence: two replicas on one
// PostgreSQL store each serve the bundle endpoint with the same
// sequence; after a root rotation driven on the Lease holder both serve
// A and B under one new sequence (the follower from the store: its own
// view of the roots does not follow the holder's root rotation).
func TestHA_BothReplicasServeTheBundleWithOneSequence(t *testing.T) {
	c := newHACluster(t, "bundleEndpoint:\n  address: 127.0.0.1:0\n  profile: https_spiffe\n")
	bDir := initCA(t)
	aPEM, err := os.ReadFile(filepath.Join(c.dirA, "root-cert.pem"))
	require.NoError(t, err)
	bPEM, err := os.ReadFile(filepath.Join(bDir, "root-cert.pem"))
	require.NoError(t, err)
	rootA, rootB := splitPEM(t, string(aPEM))[0], splitPEM(t, string(bPEM))[0]
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/meshca")
	auth := federation.WithSPIFFEAuth(x509bundle.FromX509Authorities(bundleTD, []*x509.Certificate{rootA}), id)
	a, b, _, _ := c.startPair(t)
	urls := []string{bundleURL(t, a, "/"), bundleURL(t, b, "/")}
	for i, u := range urls {
		got, err := federation.FetchBundle(t.Context(), bundleTD, u, auth)
		require.NoError(t, err, "replica %d", i)
		requireFetched(t, got, 1, 5*time.Minute, rootA)
	}

	meshca(t, "rotate", "root", "--dir", c.dirA, "--new-root-cert", filepath.Join(bDir, "root-cert.pem"), "--new-root-key", filepath.Join(bDir, "root-key.pem"), "--new-root-pq-key", filepath.Join(bDir, "root-pq-key.pem"))
	for i, s := range []*server{a, b} {
		waitFor(t, 30*time.Second, fmt.Sprintf("replica %d serves sequence 2", i), func() bool {
			_, body := get(t, "http://"+s.ops+"/metrics")
			return strings.Contains(body, "meshca_bundle_endpoint_sequence 2\n")
		})
		got, err := federation.FetchBundle(t.Context(), bundleTD, urls[i], auth)
		require.NoError(t, err, "replica %d", i)
		requireFetched(t, got, 2, 5*time.Minute, rootA, rootB)
	}
}
