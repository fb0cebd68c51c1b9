package authority_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// testCA is a real CA on disk: a file root, softkms keys and a bbolt store,
// opened exactly as meshca serve opens it.
type testCA struct {
	dir   string
	cfg   *config.Config
	rt    *authority.Runtime
	audit *bytes.Buffer
}

func newTestCA(t *testing.T, mutate ...func(*config.Config)) *testCA {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	for _, m := range mutate {
		m(cfg)
	}
	writeRoot(t, cfg, 10*365*24*time.Hour)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	rt, err := openServeCA(context.Background(), cfg, log, nil)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	return &testCA{dir: dir, cfg: cfg, rt: rt, audit: &buf}
}

func writeRoot(t *testing.T, cfg *config.Config, life time.Duration) *x509.Certificate {
	t.Helper()
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: filepath.Dir(cfg.Root.File.RootKey)})
	require.NoError(t, err)
	signer, path, err := km.Create("root-tmp", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Rename(path, cfg.Root.File.RootKey))
	rc, err := root.NewSelfSignedRoot(signer, "test root", "meshca-test", life, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644))
	return rc
}

func spiffe(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func newKey(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %s", kind)
	}
	require.NoError(t, err)
	return k
}

// csrPEM builds a CSR shaped like istio-agent's: Organization [""] and one URI SAN.
func csrPEM(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func istioCSR(t *testing.T, key crypto.Signer, id string) []byte {
	return csrPEM(t, key, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{""}},
		URIs:    []*url.URL{spiffe(t, id)},
	})
}

func countRecords(t *testing.T, st store.Issuances) int {
	t.Helper()
	n := 0
	require.NoError(t, st.ListIssuances(context.Background(), func(store.Issuance) bool { n++; return true }))
	return n
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}
