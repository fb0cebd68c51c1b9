package bundleendpoint_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/issuer/bundleendpoint"
)

// webEndpoint serves a bundle of one root over https_web at /bundle.
func webEndpoint(t *testing.T) (url string, web *webPKI, reg *prometheus.Registry) {
	t.Helper()
	rs := &roots{}
	rs.set(newRoot(t, "root A"))
	b := newBundler(t, rs, openBolt(t, filepath.Join(t.TempDir(), "meshca.db")), time.Minute)
	reg = prometheus.NewRegistry()
	require.NoError(t, b.Register(reg))
	require.NoError(t, b.Refresh(context.Background()))
	web = newWebPKI(t)
	fc := &bundleendpoint.FileCertificate{CertFile: web.certFile, KeyFile: web.keyFile, Interval: time.Minute}
	require.NoError(t, fc.Load())
	return serve(t, b, "/bundle", fc.GetCertificate), web, reg
}

// TestHandler_GetAndHeadOnThePathOnlyWithARevalidatingETag: other paths
// are a fixed 404 that does not echo the request, other methods 405 with
// Allow, If-None-Match with the ETag 304; each outcome is counted.
func TestHandler_GetAndHeadOnThePathOnlyWithARevalidatingETag(t *testing.T) {
	url, web, reg := webEndpoint(t)
	c := client(web.pool)
	do := func(method, u string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, u, nil)
		require.NoError(t, err)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	resp, body := do(http.MethodGet, url)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	etag := resp.Header.Get("ETag")
	require.Regexp(t, `^"1-[0-9a-f]{24}"$`, etag)

	resp, body2 := do(http.MethodHead, url)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, body2)
	require.Equal(t, etag, resp.Header.Get("ETag"))

	resp, _ = do(http.MethodGet, url, "If-None-Match", etag)
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	resp, notFound := do(http.MethodGet, strings.TrimSuffix(url, "/bundle")+"/%3Cscript%3E")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "not found\n", notFound)

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, _ = do(m, url)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, m)
		require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	}
	require.NotEmpty(t, body)
	require.Equal(t, 2.0, requests(t, reg, "ok"))
	require.Equal(t, 1.0, requests(t, reg, "not_modified"))
	require.Equal(t, 1.0, requests(t, reg, "not_found"))
	require.Equal(t, 3.0, requests(t, reg, "method_not_allowed"))
	require.Equal(t, 0.0, requests(t, reg, "unavailable"))
}

// TestServer_OffersX25519MLKEM768AndBoundsHeaders: a client that offers
// only the hybrid post-quantum key exchange connects with it; HTTP/2 is
// not offered; a request header over the limit is refused.
func TestServer_OffersX25519MLKEM768AndBoundsHeaders(t *testing.T) {
	url, web, _ := webEndpoint(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: web.pool, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}, NextProtos: []string{"h2", "http/1.1"}}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, tls.X25519MLKEM768, resp.TLS.CurveID)
	require.Equal(t, "HTTP/1.1", resp.Proto)

	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err = client(web.pool).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

// TestHandler_BeforeTheFirstBundleIs503: a handler without a document
// answers 503 and counts it.
func TestHandler_BeforeTheFirstBundleIs503(t *testing.T) {
	rs := &roots{}
	rs.set(newRoot(t, "root A"))
	b := newBundler(t, rs, openBolt(t, filepath.Join(t.TempDir(), "meshca.db")), time.Minute)
	reg := prometheus.NewRegistry()
	require.NoError(t, b.Register(reg))
	web := newWebPKI(t)
	fc := &bundleendpoint.FileCertificate{CertFile: web.certFile, KeyFile: web.keyFile, Interval: time.Minute}
	require.NoError(t, fc.Load())
	url := serve(t, b, "/", fc.GetCertificate)
	resp, err := client(web.pool).Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, 1.0, requests(t, reg, "unavailable"))
}

// TestFileCertificate_ReloadsChangedFilesAndKeepsTheLastGoodPair: a new
// certificate written over the files is served after the next check; a
// broken pair keeps the current one and counts a failure; a handshake
// never waits for a check.
func TestFileCertificate_ReloadsChangedFilesAndKeepsTheLastGoodPair(t *testing.T) {
	web := newWebPKI(t)
	clk := testingclock.NewFakeClock(time.Now())
	fc := &bundleendpoint.FileCertificate{CertFile: web.certFile, KeyFile: web.keyFile, Interval: 30 * time.Second, Clock: clk, Log: slog.New(slog.DiscardHandler)}
	require.NoError(t, fc.Load())
	reg := prometheus.NewRegistry()
	require.NoError(t, fc.Register(reg))
	go fc.Run(t.Context())
	served := func() string {
		c, err := fc.GetCertificate(nil)
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		require.NoError(t, err)
		return leaf.Subject.CommonName
	}
	reloads := func(result string) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, m := range mfs[0].GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
		return -1
	}
	require.Equal(t, "bundle one", served())
	require.Eventually(t, func() bool { return clk.HasWaiters() }, 10*time.Second, time.Millisecond)

	web.issue(t, "bundle two")
	require.Equal(t, "bundle one", served(), "nothing changes before the check")
	clk.Step(30 * time.Second)
	require.Eventually(t, func() bool { return served() == "bundle two" }, 10*time.Second, time.Millisecond)
	// Counted after the new pair is in use.
	require.Eventually(t, func() bool { return reloads("success") == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, os.WriteFile(web.keyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600))
	clk.Step(30 * time.Second)
	require.Eventually(t, func() bool { return reloads("failure") == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, "bundle two", served(), "a broken pair keeps the last good certificate")

	bad := &bundleendpoint.FileCertificate{CertFile: web.certFile, KeyFile: web.keyFile, Interval: time.Second}
	err := bad.Load()
	require.ErrorContains(t, err, "bundleEndpoint.https_web: "+web.certFile+" and "+web.keyFile)
	require.NotContains(t, err.Error(), "AAAA")
}

// TestServer_OneRequestPerConnectionSoNewClientsNeverRunOutOfSlots:
// go-spiffe's FetchBundle opens a new transport for every fetch and leaves
// its connection idle; the endpoint closes each connection after its
// response, so that many more fetches than the per-address connection
// limit (4 here) all succeed.
func TestServer_OneRequestPerConnectionSoNewClientsNeverRunOutOfSlots(t *testing.T) {
	url, web, _ := webEndpoint(t)
	for i := range 12 {
		_, err := federation.FetchBundle(context.Background(), td, url, federation.WithWebPKIRoots(web.pool))
		require.NoError(t, err, "fetch %d", i)
	}
	resp, err := client(web.pool).Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.True(t, resp.Close, "the response closes the connection")
}
