package bundleendpoint_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/issuer/bundleendpoint"
	"github.com/meshca/meshca/issuer/tlsconfig"
	"github.com/meshca/meshca/rotation/intermediate"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// newRoot is a self-signed root CA certificate.
func newRoot(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c, err := root.NewSelfSignedRoot(key, cn, "meshca-test", 24*time.Hour, time.Now())
	require.NoError(t, err)
	return c
}

// roots is a root set the test changes, as a root rotation changes the
// active material's roots.
type roots struct {
	mu sync.Mutex
	rs []*x509.Certificate
}

func (r *roots) set(rs ...*x509.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rs = rs
}

func (r *roots) get() []*x509.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rs
}

// openBolt opens (or reopens) the bbolt store at path until the test ends.
func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// webPKI is an operator's Web-PKI: a CA and a server certificate for
// 127.0.0.1 and localhost, written as certFile/keyFile.
type webPKI struct {
	pool              *x509.CertPool
	ca                *x509.Certificate
	caKey             crypto.Signer
	certFile, keyFile string
}

func newWebPKI(t *testing.T) *webPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "web pki root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, key, key)
	w := &webPKI{pool: x509.NewCertPool(), ca: ca, caKey: key}
	w.pool.AddCert(ca)
	dir := t.TempDir()
	w.certFile, w.keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	w.issue(t, "bundle one")
	return w
}

// issue writes a new server certificate and key under common name cn.
func (w *webPKI) issue(t *testing.T, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, w.ca, w.caKey, key)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(w.certFile, root.EncodePEM(leaf), 0o644))
	require.NoError(t, os.WriteFile(w.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
}

func newCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey crypto.Signer, key crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// meshCA is a real meshca CA (file root, softkms, bbolt) opened as serve
// opens it, for https_spiffe's serving SVID.
func meshCA(t *testing.T) *authority.Runtime {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	signer, p, err := km.Create("root-tmp", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Rename(p, filepath.Join(dir, config.RootKeyFile)))
	require.NoError(t, km.Close())
	rc, err := root.NewSelfSignedRoot(signer, "mesh root", "meshca-test", 365*24*time.Hour, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644))
	rt, _, err := intermediate.Open(context.Background(), cfg, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	return rt
}

// serve runs the endpoint on 127.0.0.1 with b's handler until the test
// ends and returns its https URL.
func serve(t *testing.T, b *bundleendpoint.Bundler, path string, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	srv, err := bundleendpoint.Listen(bundleendpoint.ServerOptions{
		Listen: "127.0.0.1:0", Handler: b.Handler(path), Mode: tlsconfig.Default, GetCertificate: getCert,
		MaxConnections: 16, Log: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return "https://" + srv.Addr().String() + path
}

// client trusts pool and nothing else.
func client(pool *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 10 * time.Second}
}

// requests is meshca_bundle_endpoint_requests_total{outcome}.
func requests(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "meshca_bundle_endpoint_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no meshca_bundle_endpoint_requests_total{outcome=%q}", outcome)
	return 0
}
