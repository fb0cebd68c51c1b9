package crl_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func TestHandler_ServesDERPEMAndCaCRLWithValidators(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	srv := serveCRLs(t, e)
	gen := crl.ScopeGeneration(p.active)
	full, _ := e.crl(t, gen, false)
	delta, _ := e.crl(t, gen, true)

	resp, body := get(t, srv.URL+"/crl/"+gen+".crl", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/pkix-crl", resp.Header.Get("Content-Type"))
	require.Equal(t, full.DER, body)
	sum := sha256.Sum256(full.DER)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	require.Equal(t, etag, resp.Header.Get("ETag"))
	require.Empty(t, resp.Header.Get("Last-Modified"), "the ETag validates; a date could not (see newServedSet)")

	resp, body = get(t, srv.URL+"/crl/"+gen+".crl", map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusNotModified, resp.StatusCode)
	require.Empty(t, body)
	resp, _ = get(t, srv.URL+"/crl/"+gen+".crl", map[string]string{"If-None-Match": `"other"`})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = get(t, srv.URL+"/crl/"+gen+".crl", map[string]string{"If-Modified-Since": full.ThisUpdate.Add(time.Hour).UTC().Format(http.TimeFormat)})
	require.Equal(t, http.StatusOK, resp.StatusCode, "If-Modified-Since alone never gets 304")

	resp, body = get(t, srv.URL+"/crl/"+gen+"-delta.crl", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, delta.DER, body)

	resp, body = get(t, srv.URL+"/crl/"+gen+".pem", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	block, rest := pem.Decode(body)
	require.NotNil(t, block)
	require.Equal(t, "X509 CRL", block.Type)
	require.Equal(t, full.DER, block.Bytes)
	require.Empty(t, rest)

	resp, body = get(t, srv.URL+"/crl/ca-crl.pem", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, e.pub.last(), body, "exactly the bytes published as ca-crl.pem")

	for _, name := range []string{"gen-99.crl", "<script>.crl", "..%2f..%2fetc%2fpasswd", "root", "gen-1.der"} {
		resp, body = get(t, srv.URL+"/crl/"+name, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, name)
		require.Equal(t, "no such CRL\n", string(body), "a fixed body that does not echo the request")
	}

	// A revocation replaces what is served; the old ETag no longer matches.
	e.run(t)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial})
	require.NoError(t, err)
	e.stepPastCoalescing(t, time.Second) // past the coalescing window and into the next second
	require.Eventually(t, func() bool {
		resp, _ := get(t, srv.URL+"/crl/"+gen+".crl", map[string]string{"If-None-Match": etag})
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 5*time.Millisecond)
	_, body = get(t, srv.URL+"/crl/"+gen+".crl", nil)
	require.True(t, strings.Contains(string(body), string(mustSerialBytes(t, is.Serial))))
}

// serveCRLs serves e's distribution point at /crl/ until the test ends.
func serveCRLs(t *testing.T, e *mgrEnv) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /crl/", e.m.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func mustSerialBytes(t *testing.T, s string) []byte {
	b, err := crl.SerialBytes(s)
	require.NoError(t, err)
	return b
}

// A rebuild within the second of the last CRL waits for the next second,
// so that thisUpdate strictly increases without dating any CRL ahead of
// the clock; a client revalidating with the earlier ETag gets the new CRL.
func TestHandler_SameSecondRebuildWaitsForTheNextSecond(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	srv := serveCRLs(t, e)
	gen := crl.ScopeGeneration(p.active)
	start := p.clk.Now().UTC() // a whole second (newMgrPKI)
	resp, before := get(t, srv.URL+"/crl/"+gen+".crl", nil)
	etag := resp.Header.Get("ETag")

	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	e.stepPastCoalescing(t, 200*time.Millisecond) // the coalescing window ends in the same second
	// The rebuild waits for the next second on a timer of its own.
	require.Eventually(t, func() bool { return e.clk.Waiters() > e.timers }, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, e.pub.count(), "the rebuild waits for the next second")
	_, body := get(t, srv.URL+"/crl/"+gen+".crl", nil)
	require.Equal(t, before, body)

	p.clk.Step(800 * time.Millisecond)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	full, fl := e.crl(t, gen, false)
	require.Equal(t, start.Add(time.Second), full.ThisUpdate)
	require.Equal(t, start.Add(time.Second), fl.ThisUpdate)
	resp, after := get(t, srv.URL+"/crl/"+gen+".crl", map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusOK, resp.StatusCode, "a new CRL is not 'not modified'")
	require.Equal(t, full.DER, after)
}

// New bytes whose date would not be later than one a client holds (here
// ca-crl.pem after one of its CRLs is rebuilt within the second of
// another, and a CRL rebuilt after the clock was stepped back) are never
// answered 304 to If-Modified-Since: the distribution point sends no
// Last-Modified, and its ETag tells the versions apart.
func TestHandler_IfModifiedSinceNeverGivesAStale304(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	srv := serveCRLs(t, e)
	gen := crl.ScopeGeneration(p.active)
	p.clk.Step(time.Second)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	e.stepPastCoalescing(t, 200*time.Millisecond)
	e.published(t, 2)
	resp, first := get(t, srv.URL+"/crl/ca-crl.pem", nil)
	etag := resp.Header.Get("ETag")
	held := p.clk.Now().Add(time.Hour).UTC().Format(http.TimeFormat) // what a client may hold from another replica

	// The same second: the retired generation goes on the root's CRL.
	_, err = e.m.Revoke(context.Background(), crl.Request{Generation: p.retired(), Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	e.stepPastCoalescing(t, 200*time.Millisecond)
	e.published(t, 3)
	resp, second := get(t, srv.URL+"/crl/ca-crl.pem", map[string]string{"If-Modified-Since": held})
	require.Equal(t, http.StatusOK, resp.StatusCode, "new bytes are not 'not modified'")
	require.NotEqual(t, first, second)
	require.Equal(t, e.pub.last(), second)
	require.NotEqual(t, etag, resp.Header.Get("ETag"))
	resp, _ = get(t, srv.URL+"/crl/ca-crl.pem", map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	require.Equal(t, http.StatusNotModified, resp.StatusCode, "the ETag validates it")

	// The clock stepped back: the rebuilt CRL is dated earlier.
	p.clk.SetTime(p.clk.Now().Add(-10 * time.Minute))
	_, is = p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err = e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	e.stepPastCoalescing(t, time.Second)
	require.Eventually(t, func() bool { return e.pub.count() == 4 }, 5*time.Second, time.Millisecond)
	full, _ := e.crl(t, gen, false)
	resp, body := get(t, srv.URL+"/crl/"+gen+".crl", map[string]string{"If-Modified-Since": held})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, full.DER, body)
}
