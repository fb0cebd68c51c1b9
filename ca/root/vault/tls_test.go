package vault

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
)

// tlsFrontend serves the test Vault over TLS, with a certificate for
// vault.meshca.test only (not for 127.0.0.1), and records the namespace
// header of every request.
type tlsFrontend struct {
	srv        *httptest.Server
	caFile     string
	mu         sync.Mutex
	namespaces []string
}

func newTLSFrontend(t *testing.T) *tlsFrontend {
	t.Helper()
	now := time.Now()
	ca := newTestRoot(t, "Vault TLS CA", now, 24*time.Hour)
	serverKey := newTestKey(t)
	serverCert := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "vault.meshca.test"}, DNSNames: []string{"vault.meshca.test"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, serverKey.Public(), nil)

	target, err := url.Parse(vaultEnv.Addr)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &tlsFrontend{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.namespaces = append(f.namespaces, r.Header.Get("X-Vault-Namespace"))
		f.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.caFile = writePEM(t, t.TempDir(), "vault-ca.pem", ca.cert)
	return f
}

func (f *tlsFrontend) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.namespaces...)
}

func TestTLS_VerifiesVaultWithConfiguredCABundleAndServerNameAndSendsNamespace(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "tls")
	f := newTLSFrontend(t)
	cfg := p.config()
	cfg.Address = f.srv.URL // https://127.0.0.1:<port>
	cfg.TLS.CACert = f.caFile
	cfg.TLS.ServerName = "vault.meshca.test"
	cfg.Namespace = "team-a"
	src, _ := newSource(t, cfg)
	km, _ := newKeys(t)

	b, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	require.NoError(t, b.Cert.CheckSignatureFrom(p.root))
	require.NoError(t, src.Probe(ctx))

	// Every request, the AppRole login included, carried the namespace.
	seen := f.seen()
	require.GreaterOrEqual(t, len(seen), 6)
	for _, ns := range seen {
		require.Equal(t, "team-a", ns)
	}
}

func TestTLS_RefusesVaultWhoseCertificateDoesNotVerify(t *testing.T) {
	p := newPKI(t, "tlsbad")
	f := newTLSFrontend(t)
	for name, tc := range map[string]struct {
		caFile, serverName, want string
	}{
		"system roots only":                  {"", "vault.meshca.test", "certificate signed by unknown authority"},
		"server name not in the certificate": {f.caFile, "", "doesn't contain any IP SANs"},
		"wrong server name":                  {f.caFile, "vault.example.com", "not vault.example.com"},
		"CA bundle missing":                  {filepath.Join(t.TempDir(), "none.pem"), "", "root.vault.tls.caCert: open "},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := p.config()
			cfg.Address = f.srv.URL
			cfg.TLS.CACert = tc.caFile
			cfg.TLS.ServerName = tc.serverName
			_, err := New(testCtx(t), cfg, WithLogger(quietLog()))
			require.ErrorContains(t, err, tc.want)
			if tc.caFile == f.caFile || tc.caFile == "" {
				require.ErrorContains(t, err, "root.vault.tls: Vault's serving certificate does not verify")
				require.NotErrorIs(t, err, ErrUnavailable)
			}
		})
	}
}
