package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/store"
)

// memRevoker keeps revocations in memory with the contract of the CRL
// manager: a serial must be hex, revoking twice returns the first record.
type memRevoker struct {
	mu    sync.Mutex
	calls int
	recs  []store.Revocation
}

func (m *memRevoker) Revoke(_ context.Context, req RevokeRequest) ([]store.Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if req.Serial == "" {
		return nil, caerr.New(caerr.InvalidArgument, "invalid_revocation", "only serials in this test")
	}
	for _, c := range req.Serial {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return nil, caerr.New(caerr.InvalidArgument, "invalid_revocation", "invalid revocation request: serial %q is not hexadecimal", req.Serial)
		}
	}
	for _, r := range m.recs {
		if r.Serial == req.Serial {
			r.Existing = true // as a store returns a serial revoked before
			return []store.Revocation{r}, nil
		}
	}
	r := store.Revocation{Seq: uint64(len(m.recs) + 1), Serial: req.Serial, Kind: store.KindLeaf, Generation: 1, Reason: req.Reason,
		RevokedAt: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), InvalidityDate: req.InvalidityDate, Requester: req.Requester}
	m.recs = append(m.recs, r)
	return []store.Revocation{r}, nil
}

func (m *memRevoker) ListRevocations(_ context.Context, since uint64, fn func(store.Revocation) bool) error {
	m.mu.Lock()
	recs := append([]store.Revocation(nil), m.recs...)
	m.mu.Unlock()
	for _, r := range recs {
		if r.Seq > since && !fn(r) {
			return nil
		}
	}
	return nil
}

type fixedCRLs []CRL

func (f fixedCRLs) CRLs() []CRL { return f }

type fixedStatus Status

func (f fixedStatus) Status(context.Context) Status { return Status(f) }

// serveAll serves o on a fresh socket and returns a client and the audit
// log.
func serveAll(t *testing.T, o Options) (*Client, *bytes.Buffer, string) {
	t.Helper()
	sock := filepath.Join(shortDir(t), "admin.sock")
	var logs syncBuffer
	o.Socket = sock
	o.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	s, err := Listen(o)
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
	return c, &logs.Buffer, sock
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Len()
}

func me(t *testing.T) string {
	u, err := user.Current()
	require.NoError(t, err)
	return "cli:" + u.Username
}

func TestRevoke_StoresAndReturnsTheRecordAndAuditsIt(t *testing.T) {
	rv := &memRevoker{}
	c, logs, _ := serveAll(t, Options{Revoker: rv, Revocations: rv})
	ctx := context.Background()

	got, err := c.Revoke(ctx, RevokeBody{Serial: "0abc", Reason: "keyCompromise", InvalidityDate: "2026-12-04T08:00:00Z"})
	require.NoError(t, err)
	want := store.Revocation{Seq: 1, Serial: "0abc", Kind: store.KindLeaf, Generation: 1, Reason: store.ReasonKeyCompromise,
		RevokedAt: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), InvalidityDate: time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC), Requester: me(t)}
	require.Equal(t, []store.Revocation{want}, got)

	// The reason as a number; the second revocation of a serial returns the
	// first record, marked as revoked before (the response's alreadyRevoked).
	got, err = c.Revoke(ctx, RevokeBody{Serial: "0abc", Reason: "4"})
	require.NoError(t, err)
	again := want
	again.Existing = true
	require.Equal(t, []store.Revocation{again}, got)

	var listed []store.Revocation
	require.NoError(t, c.ListRevocations(ctx, 0, func(r store.Revocation) bool { listed = append(listed, r); return true }))
	require.Equal(t, []store.Revocation{want}, listed)
	listed = nil
	require.NoError(t, c.ListRevocations(ctx, 1, func(r store.Revocation) bool { listed = append(listed, r); return true }))
	require.Empty(t, listed)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var events []string
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		events = append(events, fmt.Sprintf("%v %v %v %v", m["event"], m["route"], m["requester"], m["code"]))
	}
	require.Equal(t, []string{
		"certificate.revoked <nil> " + me(t) + " <nil>",
		"admin.call POST /v1/revocations " + me(t) + " 200",
		"certificate.revocation_repeated <nil> " + me(t) + " <nil>", // the repeat: no second certificate.revoked
		"admin.call POST /v1/revocations " + me(t) + " 200",
		"admin.call GET /v1/revocations " + me(t) + " 200",
		"admin.call GET /v1/revocations " + me(t) + " 200",
	}, events)
	require.Contains(t, lines[0], `"serial":"0abc","kind":"leaf","generation":1,"identity":"","known":false,"reason":"keyCompromise","revoked_at":"2026-12-05T12:00:00Z"`)
	require.Contains(t, lines[2], `"event":"certificate.revocation_repeated","serial":"0abc","kind":"leaf","generation":1,"identity":"","known":false,"reason":"keyCompromise","revoked_at":"2026-12-05T12:00:00Z","requester":"`+me(t)+`","recorded_by":"`+me(t)+`","requested_reason":"superseded"`,
		"the original record, and the reason asked for now")
}

// Bad input: 400 with a clear message, and nothing stored.
func TestRevoke_BadInputIs400AndStoresNothing(t *testing.T) {
	rv := &memRevoker{}
	c, logs, sock := serveAll(t, Options{Revoker: rv, Revocations: rv})
	for _, tc := range []struct {
		name, body, want string
		reachesRevoker   bool
	}{
		{"no selector", `{"reason":"keyCompromise"}`, "name exactly one of serial, identity or generation (got 0)", false},
		{"two selectors", `{"serial":"0a","generation":2,"reason":"keyCompromise"}`, "name exactly one of serial, identity or generation (got 2)", false},
		{"no reason", `{"serial":"0a"}`, "reason is required: an RFC 5280 reason name such as keyCompromise, superseded or cessationOfOperation, or its number", false},
		{"unknown reason", `{"serial":"0a","reason":"stolen"}`, `unknown revocation reason "stolen"; use one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (RFC 5280 section 5.3.1)`, false},
		{"reason 7", `{"serial":"0a","reason":7}`, `unknown revocation reason "7"; use one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (RFC 5280 section 5.3.1)`, false},
		{"certificate hold", `{"serial":"0a","reason":"certificateHold"}`, `reason "certificateHold" is not supported: meshca revocations are final (no certificate hold)`, false},
		{"reason object", `{"serial":"0a","reason":{}}`, "request body is not a revocation request: reason must be an RFC 5280 reason name or number", false},
		{"bad date", `{"serial":"0a","reason":1,"invalidityDate":"yesterday"}`, `invalidityDate must be an RFC 3339 time such as 2026-12-05T10:00:00Z: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`, false},
		{"unknown field", `{"serial":"0a","reason":1,"requester":"mallory"}`, `request body is not a revocation request: json: unknown field "requester"`, false},
		{"two objects", `{"serial":"0a","reason":1}{}`, "request body holds more than one JSON object", false},
		{"malformed serial", `{"serial":"xyz\u001b[31m","reason":1}`, "invalid revocation request: serial \"xyz\\x1b[31m\" is not hexadecimal", true},
	} {
		before := rv.calls
		code, msg := post(t, sock, pathRevocations, tc.body)
		require.Equal(t, http.StatusBadRequest, code, tc.name)
		require.Equal(t, tc.want, msg, tc.name)
		if !tc.reachesRevoker {
			require.Equal(t, before, rv.calls, "%s: refused before the revoker", tc.name)
		}
	}
	n := 0
	require.NoError(t, c.ListRevocations(context.Background(), 0, func(store.Revocation) bool { n++; return true }))
	require.Zero(t, n, "nothing stored")
	// The audit lines hold the caller's text only as escaped JSON strings.
	require.NotContains(t, logs.String(), "\x1b")
	require.Contains(t, logs.String(), `"event":"admin.call","action":"revoke revocations","route":"POST /v1/revocations","requester":"`+me(t)+`","code":400,"message":"name exactly one of serial, identity or generation (got 0)"`)

	// A body over the limit: 413.
	code, _ := post(t, sock, pathRevocations, `{"serial":"`+strings.Repeat("0", MaxBodyBytes)+`","reason":1}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
}

// post sends body raw and returns the status and the error message.
func post(t *testing.T, sock, path, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Post("http://meshca"+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var e errorBody
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error
}

func TestRevoke_WithoutARevokerIs503(t *testing.T) {
	c, _, _ := serveAll(t, Options{})
	_, err := c.Revoke(context.Background(), RevokeBody{Serial: "0a", Reason: "1"})
	require.Equal(t, &StatusError{Code: http.StatusServiceUnavailable, Message: "revocation is not available on this server"}, err)
}

func TestCRLs_MetadataAndDERByScope(t *testing.T) {
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	crls := fixedCRLs{
		{Scope: "gen-1", Number: 7, DER: []byte("full-1"), ThisUpdate: at, NextUpdate: at.Add(24 * time.Hour)},
		{Scope: "gen-1", Delta: true, Number: 8, DER: []byte("delta"), ThisUpdate: at, NextUpdate: at.Add(time.Hour)},
		{Scope: "root", Number: 3, DER: []byte("root!"), ThisUpdate: at, NextUpdate: at.Add(48 * time.Hour)},
	}
	c, _, _ := serveAll(t, Options{CRLs: crls, Status: fixedStatus{TrustDomain: "cluster.local", Generation: 1, IntermediateNotAfter: at.Add(365 * 24 * time.Hour), Store: Health{Path: "/x/meshca.db", Healthy: true}, LastRevocationSeq: 9, GeneratedAt: at.Add(2 * time.Hour)}})
	ctx := context.Background()
	infos, err := c.CRLs(ctx)
	require.NoError(t, err)
	require.Equal(t, []CRLInfo{
		{Scope: "gen-1", Number: 7, ThisUpdate: at, NextUpdate: at.Add(24 * time.Hour), Size: 6},
		{Scope: "gen-1", Delta: true, Number: 8, ThisUpdate: at, NextUpdate: at.Add(time.Hour), Size: 5},
		{Scope: "root", Number: 3, ThisUpdate: at, NextUpdate: at.Add(48 * time.Hour), Size: 5},
	}, infos)
	der, err := c.CRL(ctx, "gen-1", false)
	require.NoError(t, err)
	require.Equal(t, "full-1", string(der))
	der, err = c.CRL(ctx, "gen-1", true)
	require.NoError(t, err)
	require.Equal(t, "delta", string(der))
	_, err = c.CRL(ctx, "root", true)
	require.Equal(t, &StatusError{Code: http.StatusNotFound, Message: `no delta CRL for scope "root" is served; scopes: [gen-1 root]`}, err)
	_, err = c.CRL(ctx, "gen-9", false)
	require.Equal(t, &StatusError{Code: http.StatusNotFound, Message: `no CRL for scope "gen-9" is served; scopes: [gen-1 root]`}, err)

	// In the status each CRL has its health as of the status's time: the
	// delta's nextUpdate (at+1h) is past at+2h.
	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, Status{TrustDomain: "cluster.local", Generation: 1, IntermediateNotAfter: at.Add(365 * 24 * time.Hour),
		Store: Health{Path: "/x/meshca.db", Healthy: true}, LastRevocationSeq: 9, GeneratedAt: at.Add(2 * time.Hour), CRLs: []CRLInfo{
			{Scope: "gen-1", Number: 7, ThisUpdate: at, NextUpdate: at.Add(24 * time.Hour), Size: 6, Health: "ok"},
			{Scope: "gen-1", Delta: true, Number: 8, ThisUpdate: at, NextUpdate: at.Add(time.Hour), Size: 5, Health: "stale"},
			{Scope: "root", Number: 3, ThisUpdate: at, NextUpdate: at.Add(48 * time.Hour), Size: 5, Health: "ok"},
		}}, st)
}

func TestAudit_MessageIsAnEscapedField(t *testing.T) {
	var b bytes.Buffer
	audit.New(slog.New(slog.NewTextHandler(&b, nil))).AdminCall(context.Background(), audit.AdminCall{Action: "get crls", Message: "scope \"a\nb\x1b\""})
	require.NotContains(t, b.String(), "\x1b")
	require.Equal(t, 1, strings.Count(b.String(), "\n"))
}

// noticingRevoker is memRevoker that says something about every record,
// as serve's revoker does about one no CRL will list.
type noticingRevoker struct{ *memRevoker }

func (noticingRevoker) RevocationNotices(_ context.Context, recs []store.Revocation) []string {
	var out []string
	for _, r := range recs {
		out = append(out, "no CRL lists "+r.Serial)
	}
	return out
}

// The revoker's notices reach the client with the records; a revoker
// without any answers none.
func TestRevoke_TheRevokersNoticesReachTheClient(t *testing.T) {
	rv := noticingRevoker{&memRevoker{}}
	c, _, _ := serveAll(t, Options{Revoker: rv, Revocations: rv})
	recs, notices, err := c.RevokeWithNotices(context.Background(), RevokeBody{Serial: "0abc", Reason: "keyCompromise"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, []string{"no CRL lists 0abc"}, notices)

	plain := &memRevoker{}
	c, _, _ = serveAll(t, Options{Revoker: plain, Revocations: plain})
	recs, notices, err = c.RevokeWithNotices(context.Background(), RevokeBody{Serial: "0abc", Reason: "keyCompromise"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Nil(t, notices)
}
