package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/audit"
)

// cacertsSource returns files as they are, and records withCRL.
type cacertsSource struct {
	files   map[string]string
	withCRL []bool
}

func (s *cacertsSource) CACerts(_ context.Context, withCRL bool) (CACerts, error) {
	s.withCRL = append(s.withCRL, withCRL)
	return CACerts{Generation: 3, KeyRef: "/var/lib/meshca/keys/gen-3.key", Files: s.files}, nil
}

func serveCACerts(t *testing.T, src CACertsSource) (string, *Client) {
	t.Helper()
	sock := filepath.Join(shortDir(t), "admin.sock")
	s, err := Listen(Options{Socket: sock, Records: &records{}, CACerts: src, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	c := NewClient(sock)
	t.Cleanup(func() { c.Close() })
	return sock, c
}

// rawGet returns the status and the body of GET path on the socket.
func rawGet(t *testing.T, c *Client, path string) (int, string) {
	t.Helper()
	resp, err := c.send(context.Background(), http.MethodGet, path, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

const testCertPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestCACerts_ServesPublicFilesAndKeyRef(t *testing.T) {
	src := &cacertsSource{files: map[string]string{"ca-cert.pem": testCertPEM, "cert-chain.pem": testCertPEM + testCertPEM, "root-cert.pem": testCertPEM, "ca-crl.pem": "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"}}
	_, c := serveCACerts(t, src)
	got, err := c.CACerts(context.Background(), true)
	require.NoError(t, err)
	require.Equal(t, CACerts{Generation: 3, KeyRef: "/var/lib/meshca/keys/gen-3.key", Files: src.files}, got)
	_, err = c.CACerts(context.Background(), false)
	require.NoError(t, err)
	require.Equal(t, []bool{true, false}, src.withCRL)

	code, body := rawGet(t, c, pathCACerts)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, "PRIVATE KEY")
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	require.ElementsMatch(t, []string{"generation", "keyRef", "files"}, keys(raw))
}

// TestCACerts_NeverServesAKey: whatever the source gives, a private key or
// a file that is not public never leaves the endpoint.
func TestCACerts_NeverServesAKey(t *testing.T) {
	key := "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
	for name, files := range map[string]map[string]string{
		"ca-key.pem":               {"ca-cert.pem": testCertPEM, "ca-key.pem": key},
		"key inside ca-cert.pem":   {"ca-cert.pem": testCertPEM + key},
		"EC key in cert-chain.pem": {"cert-chain.pem": "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"},
		"unknown file":             {"ca-cert.pem": testCertPEM, "extra.pem": testCertPEM},
	} {
		t.Run(name, func(t *testing.T) {
			_, c := serveCACerts(t, &cacertsSource{files: files})
			code, body := rawGet(t, c, pathCACerts)
			require.Equal(t, http.StatusInternalServerError, code)
			require.Equal(t, `{"error":"internal error: refusing to serve a file that is not public"}`+"\n", body)
		})
	}
}

// TestCACerts_SocketOnly: the TCP listener's routes have no cacerts: the
// key it points at is only of use on serve's host.
func TestCACerts_SocketOnly(t *testing.T) {
	h := &handler{cacerts: &cacertsSource{files: map[string]string{"ca-cert.pem": testCertPEM}}, log: slog.New(slog.DiscardHandler), audit: audit.New(slog.New(slog.DiscardHandler))}
	for local, want := range map[bool]int{true: http.StatusOK, false: http.StatusNotFound} {
		rec := httptest.NewRecorder()
		h.routes(allowAll{}, local).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, pathCACerts, nil))
		require.Equal(t, want, rec.Code, "local=%v", local)
	}
}

type allowAll struct{}

func (allowAll) authorize(*http.Request, Action) (string, *denial) { return "test", nil }

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
