package bundleendpoint_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/bundleendpoint"
	"github.com/meshca/meshca/issuer/tlsconfig"
)

func newBundler(t *testing.T, rs *roots, seqs store.BundleSequences, hint time.Duration, opts ...func(*bundleendpoint.Options)) *bundleendpoint.Bundler {
	t.Helper()
	o := bundleendpoint.Options{TrustDomain: td, Roots: rs.get, Sequences: seqs, RefreshHint: hint, Log: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o)
	}
	b, err := bundleendpoint.New(o)
	require.NoError(t, err)
	return b
}

// requireAuthorities checks that bundle b has exactly the X.509
// authorities want, in order, its sequence and its refresh hint.
func requireBundle(t *testing.T, b *spiffebundle.Bundle, seq uint64, hint time.Duration, want ...*x509.Certificate) {
	t.Helper()
	require.Equal(t, td, b.TrustDomain())
	got := b.X509Authorities()
	require.Len(t, got, len(want))
	for i := range want {
		require.True(t, want[i].Equal(got[i]), "authority %d is %s, want %s", i, got[i].Subject, want[i].Subject)
	}
	require.Empty(t, b.JWTAuthorities())
	n, ok := b.SequenceNumber()
	require.True(t, ok, "spiffe_sequence is set")
	require.Equal(t, seq, n)
	h, ok := b.RefreshHint()
	require.True(t, ok, "spiffe_refresh_hint is set")
	require.Equal(t, hint, h)
}

// TestEndpoint_HTTPSWebServesThePublishedRootsAsASPIFFEBundle: over the
// https_web profile, go-spiffe's federation client fetches a bundle whose
// X.509 authorities are exactly the roots, with the configured sequence
// and refresh hint; the raw JSON parses with spiffebundle.Parse and every
// key is an x509-svid key with exactly one x5c certificate.
func TestEndpoint_HTTPSWebServesThePublishedRootsAsASPIFFEBundle(t *testing.T) {
	a := newRoot(t, "root A")
	rs := &roots{}
	rs.set(a)
	b := newBundler(t, rs, openBolt(t, filepath.Join(t.TempDir(), "meshca.db")), 90*time.Second)
	reg := prometheus.NewRegistry()
	require.NoError(t, b.Register(reg))
	require.NoError(t, b.Refresh(context.Background()))
	web := newWebPKI(t)
	fc := &bundleendpoint.FileCertificate{CertFile: web.certFile, KeyFile: web.keyFile, Interval: time.Minute}
	require.NoError(t, fc.Load())
	url := serve(t, b, "/bundle", fc.GetCertificate)

	got, err := federation.FetchBundle(context.Background(), td, url, federation.WithWebPKIRoots(web.pool))
	require.NoError(t, err)
	requireBundle(t, got, 1, 90*time.Second, a)

	resp, err := client(web.pool).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parsed, err := spiffebundle.Parse(td, body)
	require.NoError(t, err)
	requireBundle(t, parsed, 1, 90*time.Second, a)
	var doc struct {
		Keys []struct {
			Use string   `json:"use"`
			X5C []string `json:"x5c"`
		} `json:"keys"`
		Sequence    uint64 `json:"spiffe_sequence"`
		RefreshHint int64  `json:"spiffe_refresh_hint"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Len(t, doc.Keys, 1)
	require.Equal(t, "x509-svid", doc.Keys[0].Use)
	require.Equal(t, []string{base64.StdEncoding.EncodeToString(a.Raw)}, doc.Keys[0].X5C)
	require.Equal(t, uint64(1), doc.Sequence)
	require.Equal(t, int64(90), doc.RefreshHint)
	require.Equal(t, 2.0, requests(t, reg, "ok"))
	require.Equal(t, 1.0, metricValue(t, reg, "meshca_bundle_endpoint_sequence"))
	require.Equal(t, 1.0, metricValue(t, reg, "meshca_bundle_endpoint_authorities"))
}

// TestEndpoint_HTTPSSPIFFEServesWithAnSVIDThatGoSPIFFEAuthenticates: over
// the https_spiffe profile the endpoint presents an X.509-SVID that
// meshca issued itself; go-spiffe's client pinning that SPIFFE ID with the
// mesh's roots as its bootstrap bundle fetches the bundle, and a client
// pinning another ID is refused.
func TestEndpoint_HTTPSSPIFFEServesWithAnSVIDThatGoSPIFFEAuthenticates(t *testing.T) {
	rt := meshCA(t)
	meshRoots := rt.Authority.Material().Bundle.Roots
	rs := &roots{}
	rs.set(meshRoots...)
	b := newBundler(t, rs, rt.Store.(store.BundleSequences), 5*time.Minute)
	require.NoError(t, b.Refresh(context.Background()))
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/meshca")
	sc := &tlsconfig.ServingCert{Authority: rt.Authority, SPIFFEID: id, TTL: time.Hour, Log: slog.New(slog.DiscardHandler)}
	require.NoError(t, sc.Start(t.Context()))
	url := serve(t, b, "/", sc.GetCertificate)

	bootstrap := x509bundle.FromX509Authorities(td, meshRoots)
	got, err := federation.FetchBundle(context.Background(), td, url, federation.WithSPIFFEAuth(bootstrap, id))
	require.NoError(t, err)
	requireBundle(t, got, 1, 5*time.Minute, meshRoots...)

	other := spiffeid.RequireFromString("spiffe://cluster.local/ns/istio-system/sa/someone-else")
	_, err = federation.FetchBundle(context.Background(), td, url, federation.WithSPIFFEAuth(bootstrap, other))
	require.ErrorContains(t, err, `unexpected ID "spiffe://cluster.local/ns/istio-system/sa/meshca"`)
}

// TestBundler_SequenceRisesWhenTheRootsChangeAndNeverGoesBackAcrossARestart:
// a root rotation publishes A+B (sequence 2), a restart serving A+B keeps
// 2, and removing A is 3; the same roots in another order are the same
// content.
func TestBundler_SequenceRisesWhenTheRootsChangeAndNeverGoesBackAcrossARestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meshca.db")
	a, bRoot := newRoot(t, "root A"), newRoot(t, "root B")
	rs := &roots{}
	rs.set(a)
	st := openBolt(t, path)
	b := newBundler(t, rs, st, time.Minute)
	require.NoError(t, b.Refresh(ctx))
	require.Equal(t, uint64(1), b.Current().Sequence)
	rs.set(a, bRoot)
	require.NoError(t, b.Refresh(ctx))
	doc := b.Current()
	require.Equal(t, uint64(2), doc.Sequence)
	parsed, err := spiffebundle.Parse(td, doc.JSON)
	require.NoError(t, err)
	requireBundle(t, parsed, 2, time.Minute, a, bRoot)
	rs.set(bRoot, a, a)
	require.NoError(t, b.Refresh(ctx))
	require.Same(t, doc, b.Current(), "the same roots in another order (or repeated) are the same content")

	require.NoError(t, st.Close())
	st = openBolt(t, path)
	b = newBundler(t, rs, st, time.Minute)
	require.NoError(t, b.Refresh(ctx))
	require.Equal(t, uint64(2), b.Current().Sequence, "a restart serving the same roots keeps the number")
	rs.set(bRoot)
	require.NoError(t, b.Refresh(ctx))
	require.Equal(t, uint64(3), b.Current().Sequence)
	parsed, err = spiffebundle.Parse(td, b.Current().JSON)
	require.NoError(t, err)
	requireBundle(t, parsed, 3, time.Minute, bRoot)
}

// flakyStore fails BundleSequence while fail is set.
type flakyStore struct {
	store.BundleSequences
	fail  atomic.Bool
	calls atomic.Int32
}

func (f *flakyStore) BundleSequence(ctx context.Context, name string, d [32]byte, content []byte) (uint64, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return 0, errors.New("connection refused")
	}
	return f.BundleSequences.BundleSequence(ctx, name, d, content)
}

// TestBundler_RunPicksUpNewRootsAndKeepsServingWhileTheStoreFails: the
// background loop sees a root change at its next poll; while the store
// cannot number it, the previous bundle stays served and the failures are
// counted, and the new bundle is served once the store answers again.
// Unchanged roots never reach the store.
func TestBundler_RunPicksUpNewRootsAndKeepsServingWhileTheStoreFails(t *testing.T) {
	a, bRoot := newRoot(t, "root A"), newRoot(t, "root B")
	rs := &roots{}
	rs.set(a)
	st := &flakyStore{BundleSequences: openBolt(t, filepath.Join(t.TempDir(), "meshca.db"))}
	clk := testingclock.NewFakeClock(time.Now())
	b := newBundler(t, rs, st, time.Minute, func(o *bundleendpoint.Options) {
		o.Clock, o.Poll = clk, time.Second
		o.Backoff = wait.Backoff{Duration: 5 * time.Second, Factor: 1, Steps: 1 << 30}
	})
	reg := prometheus.NewRegistry()
	require.NoError(t, b.Register(reg))
	require.NoError(t, b.Start(t.Context()))
	parked := func() {
		require.Eventually(t, func() bool { return clk.Waiters() == 1 }, 10*time.Second, time.Millisecond)
	}
	parked()
	for range 3 {
		clk.Step(time.Second)
		parked()
	}
	require.Equal(t, int32(1), st.calls.Load(), "unchanged roots are not numbered again")

	st.fail.Store(true)
	rs.set(a, bRoot)
	clk.Step(time.Second)
	parked()
	require.Equal(t, uint64(1), b.Current().Sequence, "the previous bundle stays served")
	failures := metricValue(t, reg, "meshca_bundle_endpoint_refresh_failures_total")
	require.Equal(t, 1.0, failures)
	clk.Step(time.Second)
	parked()
	require.Equal(t, int32(2), st.calls.Load(), "a retry waits for the backoff, not the poll")

	st.fail.Store(false)
	clk.Step(4 * time.Second)
	parked()
	require.Equal(t, uint64(2), b.Current().Sequence)
	require.Len(t, b.Current().Authorities, 2)
}

// metricValue is the value of the unlabelled gauge or counter name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestBundler_AFollowerServesTheBundleTheLeaseHolderNumbered: a replica
// that does not hold the Lease serves the bundle the holder numbered last,
// from the store, even while its own roots lag behind the holder's (a root
// rotation runs on the holder); before anything was numbered it numbers
// its own roots; once it leads it serves its roots again.
func TestBundler_AFollowerServesTheBundleTheLeaseHolderNumbered(t *testing.T) {
	ctx := context.Background()
	a, bRoot := newRoot(t, "root A"), newRoot(t, "root B")
	st := openBolt(t, filepath.Join(t.TempDir(), "meshca.db"))
	holderRoots, followerRoots := &roots{}, &roots{}
	holderRoots.set(a)
	followerRoots.set(a)
	var leads atomic.Bool
	holder := newBundler(t, holderRoots, st, time.Minute, func(o *bundleendpoint.Options) { o.Leading = func() bool { return true } })
	follower := newBundler(t, followerRoots, st, time.Minute, func(o *bundleendpoint.Options) { o.Leading = leads.Load })

	require.NoError(t, follower.Refresh(ctx))
	require.Equal(t, uint64(1), follower.Current().Sequence, "nothing numbered yet: the follower numbers its roots")
	require.NoError(t, holder.Refresh(ctx))
	require.Equal(t, uint64(1), holder.Current().Sequence)

	holderRoots.set(a, bRoot)
	require.NoError(t, holder.Refresh(ctx))
	require.Equal(t, uint64(2), holder.Current().Sequence)
	require.NoError(t, follower.Refresh(ctx))
	require.Equal(t, uint64(2), follower.Current().Sequence)
	require.Equal(t, holder.Current().JSON, follower.Current().JSON, "the follower serves the holder's bundle byte for byte")
	parsed, err := spiffebundle.Parse(td, follower.Current().JSON)
	require.NoError(t, err)
	requireBundle(t, parsed, 2, time.Minute, a, bRoot)

	leads.Store(true)
	require.NoError(t, follower.Refresh(ctx))
	require.Equal(t, uint64(3), follower.Current().Sequence, "leading, it numbers its own (lagging) roots: a change")
	parsed, err = spiffebundle.Parse(td, follower.Current().JSON)
	require.NoError(t, err)
	requireBundle(t, parsed, 3, time.Minute, a)
}
