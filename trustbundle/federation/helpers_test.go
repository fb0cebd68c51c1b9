package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// ca is a throwaway CA of a foreign trust domain.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA mints a self-signed root; with uri it carries that URI SAN (a
// SPIFFE signing certificate names its trust domain, X509-SVID §3.2).
func newCA(t *testing.T, cn, uri string) ca {
	t.Helper()
	return newCAValid(t, cn, uri, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// newCAValid mints a self-signed root valid from notBefore to notAfter.
func newCAValid(t *testing.T, cn, uri string, notBefore, notAfter time.Time) ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if uri != "" {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca{cert: c, key: key}
}

// svid issues an X509-SVID for id, for an https_spiffe endpoint.
func (c ca) svid(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// foreign is a foreign trust domain's bundle endpoint, served by go-spiffe's
// own handler (independent of meshca's endpoint code).
type foreign struct {
	td  spiffeid.TrustDomain
	srv *httptest.Server

	mu     sync.Mutex
	bundle *spiffebundle.Bundle
	cert   *tls.Certificate // https_spiffe: the SVID presented
	hits   int
}

func (f *foreign) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bundle.GetBundleForTrustDomain(td)
}

// serve sets the bundle served next: roots, a sequence number and a refresh
// hint (none when 0).
func (f *foreign) serve(seq uint64, hint time.Duration, roots ...*x509.Certificate) {
	b := spiffebundle.FromX509Authorities(f.td, roots)
	if seq > 0 {
		b.SetSequenceNumber(seq)
	}
	if hint > 0 {
		b.SetRefreshHint(hint)
	}
	f.mu.Lock()
	f.bundle = b
	f.mu.Unlock()
}

func (f *foreign) present(c tls.Certificate) {
	f.mu.Lock()
	f.cert = &c
	f.mu.Unlock()
}

func (f *foreign) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// newForeign starts td's bundle endpoint; with svid it presents that
// X509-SVID (https_spiffe), otherwise httptest's Web PKI certificate.
func newForeign(t *testing.T, td string, svid *tls.Certificate) *foreign {
	t.Helper()
	f := &foreign{td: spiffeid.RequireTrustDomainFromString(td), cert: svid}
	h, err := gofed.NewHandler(f.td, f)
	require.NoError(t, err)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hits++
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	if svid != nil {
		// GetConfigForClient runs on every handshake (GetCertificate would
		// not, with httptest's certificate set and no SNI for an IP).
		f.srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return &tls.Config{Certificates: []tls.Certificate{*f.cert}}, nil
		}}
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// webCAFile writes the test server's Web PKI root for caFile.
func (f *foreign) webCAFile(t *testing.T) string {
	return writePEM(t, f.srv.Certificate())
}

func writePEM(t *testing.T, certs ...*x509.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "roots.pem")
	require.NoError(t, os.WriteFile(p, root.EncodePEM(certs...), 0o600))
	return p
}

// sink records what the poller publishes.
type sink struct {
	mu         sync.Mutex
	calls      int
	configured []string
	roots      map[string][]*x509.Certificate
}

func (s *sink) SetFederated(_ context.Context, configured []string, roots map[string][]*x509.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.configured, s.roots = configured, roots
	return nil
}

func (s *sink) published() (int, map[string][]*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.roots
}
