package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/store"
)

// records is a fixed list of issuance records; failAfter > 0 makes the
// listing fail after that many records.
type records struct {
	recs      []store.Issuance
	failAfter int
	panicGet  bool
}

func (r *records) GetIssuance(_ context.Context, serial string) (store.Issuance, error) {
	if r.panicGet {
		panic("boom")
	}
	for _, rec := range r.recs {
		if rec.Serial == serial {
			return rec, nil
		}
	}
	return store.Issuance{}, store.ErrNotFound
}

func (r *records) ListIssuances(_ context.Context, fn func(store.Issuance) bool) error {
	for i, rec := range r.recs {
		if r.failAfter > 0 && i == r.failAfter {
			return errors.New("disk on fire")
		}
		if !fn(rec) {
			return nil
		}
	}
	return nil
}

type noSigner struct{}

func (noSigner) Sign(context.Context, authority.Request) (*authority.Result, error) {
	panic("sign must not be reached")
}

func shortDir(t *testing.T) string {
	t.Helper()
	// t.TempDir can exceed sun_path's 108 bytes.
	dir, err := os.MkdirTemp("", "adm")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func serve(t *testing.T, rs Records) (*Server, *Client) {
	t.Helper()
	return serveWith(t, rs, nil)
}

func serveWith(t *testing.T, rs Records, reg prometheus.Registerer) (*Server, *Client) {
	t.Helper()
	sock := filepath.Join(shortDir(t), "admin.sock")
	s, err := Listen(Options{Socket: sock, Signer: noSigner{}, Records: rs, Log: slog.New(slog.DiscardHandler), Registerer: reg})
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
	return s, c
}

func TestListen_SocketIs0600AndRemovedOnClose(t *testing.T) {
	s, _ := serve(t, &records{})
	fi, err := os.Lstat(s.Path())
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type())
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(s.Path()))
	require.NoError(t, err)
	require.Len(t, entries, 1, "the temporary bind directory is gone")
	require.NoError(t, s.Close())
	_, err = os.Lstat(s.Path())
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestListen_RemovesOnlyAStaleSocket(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "admin.sock")

	// Something that is not a socket is never removed.
	require.NoError(t, os.WriteFile(sock, []byte("x"), 0o600))
	_, err := Listen(Options{Socket: sock})
	require.EqualError(t, err, "admin socket "+sock+" exists and is not a socket; remove it or choose another server.adminSocket")
	require.NoError(t, os.Remove(sock))

	// A live socket stops the start and is left alone.
	live, err := net.Listen("unix", sock)
	require.NoError(t, err)
	_, err = Listen(Options{Socket: sock})
	require.EqualError(t, err, "admin socket "+sock+" is in use by another process (another meshca serve?); stop it or choose another server.adminSocket")
	_, err = os.Lstat(sock)
	require.NoError(t, err)

	// Once no one listens, it is stale and replaced.
	live.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, live.Close())
	s, err := Listen(Options{Socket: sock})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestListen_RefusesADirectoryOthersCanWrite(t *testing.T) {
	dir := shortDir(t)
	require.NoError(t, os.Chmod(dir, 0o777))
	_, err := Listen(Options{Socket: filepath.Join(dir, "admin.sock")})
	require.EqualError(t, err, "admin socket directory "+dir+" is writable by others (mode 0777); run chmod o-w "+dir+", or choose a server.adminSocket in a private directory")
}

// A Kubernetes volume under the pod's fsGroup is group-writable and setgid:
// serve must start there.
func TestListen_AcceptsAGroupWritableVolumeDirectory(t *testing.T) {
	dir := shortDir(t)
	require.NoError(t, os.Chmod(dir, 0o775|os.ModeSetgid))
	s, err := Listen(Options{Socket: filepath.Join(dir, "admin.sock")})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestClose_LeavesASocketSomeoneElseReplacedItWith(t *testing.T) {
	s, _ := serve(t, &records{})
	require.NoError(t, os.Remove(s.Path()))
	other, err := net.Listen("unix", s.Path())
	require.NoError(t, err)
	defer other.Close()
	require.NoError(t, s.Close())
	_, err = os.Lstat(s.Path())
	require.NoError(t, err, "not ours: left in place")
}

func TestClient_ReadsRecordsAndMapsNotFound(t *testing.T) {
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	recs := []store.Issuance{
		{Serial: "0a", Identity: "spiffe://cluster.local/ns/a/sa/a", NotAfter: at, Generation: 1, Requester: "cli:root"},
		{Serial: "0b", Identity: "spiffe://cluster.local/ns/b/sa/b", NotAfter: at.Add(time.Hour), Generation: 2},
	}
	_, c := serve(t, &records{recs: recs})
	var got []store.Issuance
	require.NoError(t, c.ListIssuances(context.Background(), func(r store.Issuance) bool { got = append(got, r); return true }))
	require.Equal(t, recs, got)

	rec, err := c.GetIssuance(context.Background(), "0b")
	require.NoError(t, err)
	require.Equal(t, recs[1], rec)
	_, err = c.GetIssuance(context.Background(), "0c")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = c.GetIssuance(context.Background(), "zz")
	require.EqualError(t, err, `serial "zz" is not hex`)
}

func TestClient_AListingThatFailsMidwayIsAnErrorNotAShortList(t *testing.T) {
	recs := []store.Issuance{{Serial: "0a"}, {Serial: "0b"}, {Serial: "0c"}}
	_, c := serve(t, &records{recs: recs, failAfter: 2})
	n := 0
	err := c.ListIssuances(context.Background(), func(store.Issuance) bool { n++; return true })
	require.ErrorContains(t, err, "the listing was cut short")
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Less(t, n, len(recs), "the caller never saw a complete-looking list")
}

func TestServer_APanicAnswers500AndTheServerLivesOn(t *testing.T) {
	rs := &records{recs: []store.Issuance{{Serial: "0a"}}, panicGet: true}
	reg := prometheus.NewRegistry()
	_, c := serveWith(t, rs, reg)
	_, err := c.GetIssuance(context.Background(), "0a")
	require.EqualError(t, err, "internal error")
	rs.panicGet = false
	rec, err := c.GetIssuance(context.Background(), "0a")
	require.NoError(t, err)
	require.Equal(t, "0a", rec.Serial)
	_, err = c.GetIssuance(context.Background(), "0b")
	require.ErrorIs(t, err, store.ErrNotFound)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meshca_admin_requests_total Requests on the admin endpoint, by listener (socket, tcp), registered route and HTTP status.
# TYPE meshca_admin_requests_total counter
meshca_admin_requests_total{code="200",listener="socket",route="GET /v1/records/{serial}"} 1
meshca_admin_requests_total{code="404",listener="socket",route="GET /v1/records/{serial}"} 1
meshca_admin_requests_total{code="500",listener="socket",route="GET /v1/records/{serial}"} 1
`), "meshca_admin_requests_total"))
}

func TestAuthorize_RefusesAnotherUser(t *testing.T) {
	var logs strings.Builder
	al := audit.New(slog.New(slog.NewJSONHandler(&logs, nil)))
	next := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	for _, tc := range []struct {
		name string
		p    peer
		want int
	}{
		{"same user", peer{uid: 1000}, http.StatusNoContent},
		{"root", peer{uid: 0}, http.StatusNoContent},
		{"other user", peer{uid: 1001}, http.StatusForbidden},
		{"unreadable credentials", peer{err: errors.New("getsockopt failed")}, http.StatusForbidden},
		{"platform without credentials", peer{err: errPeerUnsupported}, http.StatusNoContent},
	} {
		w := httptest.NewRecorder()
		r, _ := http.NewRequestWithContext(context.WithValue(context.Background(), peerKey{}, tc.p), http.MethodGet, "/v1/records", nil)
		guard(socketAuth{euid: 1000}, al, ActListRecords, next).ServeHTTP(w, r)
		require.Equal(t, tc.want, w.Code, tc.name)
		if tc.want == http.StatusForbidden {
			require.True(t, strings.HasPrefix(w.Body.String(), `{"error":`), w.Body.String())
		}
	}
	require.Contains(t, logs.String(), `"event":"admin.denied","action":"list records","route":"","requester":"cli:uid:1001","code":403,"reason":"other_user"`)
}
