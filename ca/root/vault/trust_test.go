package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store/boltstore"
)

func TestCRL_RootCRLIsFetchedParsedKeptAndRefreshedAfterARevocation(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "crl")
	refresh := newStepSleeper()
	src, reg := newSource(t, p.config(), WithSleep(refresh.sleep))

	// New fetched the root's CRL: issued and signed by Vault's root.
	first := src.CurrentCRL()
	require.NotNil(t, first)
	require.True(t, bytes.Equal(p.root.RawSubject, first.RawIssuer))
	require.NoError(t, first.CheckSignatureFrom(p.root))
	require.Empty(t, first.RevokedCertificateEntries)
	require.True(t, first.NextUpdate.After(time.Now()))
	require.Equal(t, float64(first.NextUpdate.Unix()), gauge(t, reg, "meshca_root_source_crl_next_update_timestamp_seconds"))

	// An intermediate is revoked in Vault; the refresher picks up the new CRL.
	km, _ := newKeys(t)
	b, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	_, err = vaultEnv.Client.Logical().WriteWithContext(ctx, p.mount+"/revoke", map[string]any{"serial_number": serialColons(b.Cert)})
	require.NoError(t, err)

	runLoop(t, src.RunCRLRefresh)
	require.Equal(t, p.config().CRLRefreshInterval.Duration, refresh.next(t), "a fresh 72h CRL is fetched every crlRefreshInterval")
	refresh.wake()
	refresh.next(t)
	got := src.CurrentCRL()
	require.Positive(t, got.Number.Cmp(first.Number), "CRL number must grow")
	require.NoError(t, got.CheckSignatureFrom(p.root))
	require.Len(t, got.RevokedCertificateEntries, 1)
	require.Zero(t, got.RevokedCertificateEntries[0].SerialNumber.Cmp(b.Cert.SerialNumber))
}

func TestNextCRLRefresh_FetchesBeforeTheCRLGoesStale(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	crl := func(this, next time.Duration) *x509.RevocationList {
		return &x509.RevocationList{ThisUpdate: now.Add(this), NextUpdate: now.Add(next)}
	}
	for name, tc := range map[string]struct {
		crl      *x509.RevocationList
		interval time.Duration
		want     time.Duration
	}{
		"no CRL yet: the interval":                 {nil, time.Hour, time.Hour},
		"fresh 72h CRL: the interval":              {crl(0, 72*time.Hour), time.Hour, time.Hour},
		"4h CRL: at three quarters of its life":    {crl(0, 4*time.Hour), 6 * time.Hour, 3 * time.Hour},
		"nearly stale: soon, but not in a loop":    {crl(-4*time.Hour, 10*time.Second), time.Hour, time.Minute},
		"already stale: retried every minute":      {crl(-80*time.Hour, -8*time.Hour), time.Hour, time.Minute},
		"short interval is not floored to 1m":      {crl(-80*time.Hour, -8*time.Hour), 20 * time.Second, 20 * time.Second},
		"CRL without nextUpdate: the interval":     {&x509.RevocationList{ThisUpdate: now}, time.Hour, time.Hour},
		"half-way through a 2h CRL: 30 min to go":  {crl(-time.Hour, time.Hour), time.Hour, 30 * time.Minute},
		"interval shorter than the CRL's deadline": {crl(0, 4*time.Hour), 10 * time.Minute, 10 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, nextCRLRefresh(now, tc.crl, tc.interval))
		})
	}
}

func TestRoots_AreVaultsSelfSignedRootAndPinnedFingerprintAcceptsColons(t *testing.T) {
	p := newPKI(t, "roots")
	cfg := p.config()
	fp := strings.ToUpper(Fingerprint(p.root))
	var colons []string
	for i := 0; i < len(fp); i += 2 {
		colons = append(colons, fp[i:i+2])
	}
	cfg.ExpectedRootFingerprint = strings.Join(colons, ":")
	cfg.Init()
	src, _ := newSource(t, cfg)
	roots, err := src.Roots(testCtx(t))
	require.NoError(t, err)
	require.Len(t, roots, 1)
	require.True(t, roots[0].Equal(p.root))
}

// crlMemoryOnDisk is a CRL memory on a new bbolt store.
func crlMemoryOnDisk(t *testing.T) *root.CRLMemory {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mem := root.NewCRLMemory(st)
	require.NotNil(t, mem)
	return mem
}

// crlFront is Vault seen through a front that answers <mount>/crl/pem
// with the PEM CRL set by serve (Vault's own while none is), and counts
// those answers.
type crlFront struct {
	url    string
	pem    atomic.Pointer[[]byte]
	served atomic.Int32
}

func newCRLFront(t *testing.T) *crlFront {
	t.Helper()
	target, err := url.Parse(vaultEnv.Addr)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &crlFront{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := f.pem.Load(); b != nil && strings.HasSuffix(r.URL.Path, "/crl/pem") {
			f.served.Add(1)
			_, _ = w.Write(*b)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// serve makes the front answer with the CRL der.
func (f *crlFront) serve(der []byte) {
	b := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	f.pem.Store(&b)
}

// TestCRL_ARestartedSourceNeverTakesAnOlderCRLThanItKept: a source that
// kept a CRL in meshca's store (WithCRLMemory), restarted while its
// Vault's crl/pem answers with an older CRL of the same root (replayed, or
// a restored mount), keeps publishing the newer one, which lists the
// intermediate revoked in between.
func TestCRL_ARestartedSourceNeverTakesAnOlderCRLThanItKept(t *testing.T) {
	ctx := testCtx(t)
	p := newPKI(t, "crlkept")
	mem := crlMemoryOnDisk(t)

	src, _ := newSource(t, p.config(), WithCRLMemory(mem))
	older := src.CurrentCRL()
	require.NotNil(t, older)
	km, _ := newKeys(t)
	b, _, _, err := mintGeneration(ctx, src, km, keys.ECP256, tmpl, time.Now())
	require.NoError(t, err)
	_, err = vaultEnv.Client.Logical().WriteWithContext(ctx, p.mount+"/revoke", map[string]any{"serial_number": serialColons(b.Cert)})
	require.NoError(t, err)
	newer, err := src.CRL(ctx)
	require.NoError(t, err)
	require.Positive(t, newer.Number.Cmp(older.Number))
	require.Len(t, newer.RevokedCertificateEntries, 1)

	// Vault, seen through a front that answers crl/pem with the older CRL.
	front := newCRLFront(t)
	front.serve(older.Raw)
	cfg := p.config()
	cfg.Address = front.url

	restarted, _ := newSource(t, cfg, WithCRLMemory(mem))
	require.Positive(t, front.served.Load(), "the restarted source read the replayed CRL")
	got := restarted.CurrentCRL()
	require.NotNil(t, got)
	require.Equal(t, newer.Raw, got.Raw, "the CRL kept, not the older one Vault served")
	_, err = restarted.CRL(ctx)
	require.NoError(t, err)
	require.Equal(t, newer.Raw, restarted.CurrentCRL().Raw, "a refresh keeps it too")

	// Without the store, the restarted source takes what it is served.
	forgetful, _ := newSource(t, cfg)
	require.Equal(t, older.Raw, forgetful.CurrentCRL().Raw)
}

// TestCRL_AMountWhoseNumberingWentBack: Vault's CRL (a front serves CRLs
// signed with the mount's exported root key, as a mount rebuilt from that
// key would, and replays of older ones) is compared with
// the CRL kept in the store across restarts: a replayed older CRL stays
// refused after the newer one expired, even valid for longer; a CRL issued
// after it with a lower number (the mount's numbering went back) is taken
// and kept, and a source that still holds the expired one follows it.
func TestCRL_AMountWhoseNumberingWentBack(t *testing.T) {
	ctx := testCtx(t)
	p := newExportedPKI(t, "renumber")
	mem := crlMemoryOnDisk(t)

	start := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&start)
	now := func() time.Time { return *clock.Load() }
	front := newCRLFront(t)
	serve := func(n int64, thisUpdate, nextUpdate time.Time) {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		}, p.root, p.rootKey)
		require.NoError(t, err)
		front.serve(der)
	}
	cfg := p.config()
	cfg.Address = front.url
	open := func() *Source {
		src, _ := newSource(t, cfg, WithCRLMemory(mem), WithClock(now))
		return src
	}

	serve(100, start.Add(-time.Minute), start.Add(time.Hour))
	first := open()
	require.Equal(t, int64(100), first.CurrentCRL().Number.Int64())

	// Two hours later CRL 100 has expired. A replayed CRL 50, issued
	// before it and valid for a month, is not taken by a restarted
	// source: it holds CRL 100, as before the restart.
	later := start.Add(2 * time.Hour)
	clock.Store(&later)
	serve(50, start.Add(-time.Hour), start.Add(30*24*time.Hour))
	restarted := open()
	require.Equal(t, int64(100), restarted.CurrentCRL().Number.Int64())
	got, err := restarted.CRL(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(100), got.Number.Int64())

	// The mount was rebuilt from the same key: CRL 3, issued after CRL
	// 100, is taken and kept in its place.
	serve(3, start.Add(90*time.Minute), start.Add(3*time.Hour))
	got, err = restarted.CRL(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), got.Number.Int64())
	require.Equal(t, int64(3), restarted.CurrentCRL().Number.Int64())
	// The first source, which holds the expired CRL 100, follows the
	// store even when served the replayed CRL 50 again.
	serve(50, start.Add(-time.Hour), start.Add(30*24*time.Hour))
	got, err = first.CRL(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), got.Number.Int64())
	require.Equal(t, int64(3), open().CurrentCRL().Number.Int64(), "and so does the next restart")

	// After CRL 3 expired too, a restart served CRL 50 (a greater number
	// than 3, issued before it) holds CRL 3, as before the restart.
	last := start.Add(4 * time.Hour)
	clock.Store(&last)
	require.Equal(t, int64(3), open().CurrentCRL().Number.Int64())
}
