package main

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
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/federation"
)

// federationConfig writes a configuration federating with the trust
// domains in yaml (the federation.trustDomains list).
func federationConfig(t *testing.T, dir, trustDomains string) string {
	t.Helper()
	p := filepath.Join(dir, "meshca.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`root: {source: file, file: {rootCert: root-cert.pem, rootKey: root-key.pem}}
keyStore: {type: softkms, dir: keys}
store: {type: bolt, path: meshca.db}
federation:
  trustDomains:
`+trustDomains), 0o600))
	return p
}

func TestFederationSnippet_PrintsSpiffeBundleURLPerTrustDomain(t *testing.T) {
	cfg := federationConfig(t, t.TempDir(), `    - trustDomain: partner.example
      bundleEndpointURL: https://bundle.partner.example/
      profile: https_web
    - trustDomain: spire.example
      bundleEndpointURL: https://spire.example:8443
      profile: https_spiffe
      endpointSPIFFEID: spiffe://spire.example/spire/server
      bootstrapBundle: boot.pem
`)
	out, err := runMeshca(t, "federation", "snippet", "--config", cfg)
	require.NoError(t, err)
	require.Equal(t, `# Istio meshConfig.caCertificates for meshca's federated trust domains (meshca federation snippet)
# WARNING: spire.example serve https_spiffe; istiod fetches spiffeBundleUrl with Web PKI roots only: use --pem for them
meshConfig:
  caCertificates:
  - spiffeBundleUrl: https://bundle.partner.example/
    trustDomains:
    - partner.example
  - spiffeBundleUrl: https://spire.example:8443
    trustDomains:
    - spire.example
`, out)

	_, err = runMeshca(t, "federation", "snippet", "--config", cfg, "--pem")
	require.ErrorContains(t, err, "no bundle has been fetched yet for partner.example")
}

func TestFederationSnippet_PEMInlinesTheLastFetchedRoots(t *testing.T) {
	dir := t.TempDir()
	partnerRoot := selfSignedCA(t, "partner root")
	td := spiffeid.RequireTrustDomainFromString("partner.example")
	bundle := spiffebundle.FromX509Authorities(td, []*x509.Certificate{partnerRoot})
	bundle.SetSequenceNumber(12)
	h, err := gofed.NewHandler(td, bundle)
	require.NoError(t, err)
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.pem"), root.EncodePEM(srv.Certificate()), 0o600))
	path := federationConfig(t, dir, fmt.Sprintf(`    - trustDomain: partner.example
      bundleEndpointURL: %s
      profile: https_web
      caFile: web.pem
`, srv.URL))

	// meshca serve's poller fetches and keeps the bundle.
	cfg, err := config.Load(path)
	require.NoError(t, err)
	clk := clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	p, err := federation.New(federation.Options{Config: cfg.Federation, Clock: clk})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return len(p.Snapshots()) == 1 }, 10*time.Second, time.Millisecond)

	out, err := runMeshca(t, "federation", "snippet", "--config", path, "--pem")
	require.NoError(t, err)
	require.Contains(t, out, "# partner.example: 1 roots, sequence 12, fetched "+clk.Now().Format(time.RFC3339)+"\n")
	var got struct {
		MeshConfig struct {
			CACertificates []caCertificate `json:"caCertificates"`
		} `json:"meshConfig"`
	}
	require.NoError(t, yaml.UnmarshalStrict([]byte(out), &got))
	require.Equal(t, []caCertificate{{PEM: string(root.EncodePEM(partnerRoot)), TrustDomains: []string{"partner.example"}}}, got.MeshConfig.CACertificates)
}

func selfSignedCA(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}
