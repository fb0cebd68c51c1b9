package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/config"
)

const partner = "partner.example"

var partnerTD = spiffeid.RequireTrustDomainFromString(partner)

type fixture struct {
	p     *Poller
	sink  *sink
	clock *clocktesting.FakeClock
	dir   string
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, o Options, tds ...config.FederatedTrustDomainConfig) *fixture {
	t.Helper()
	f := &fixture{sink: &sink{}, clock: clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second)), dir: t.TempDir(), reg: prometheus.NewRegistry()}
	o.Config.TrustDomains = tds
	o.Config.StateDir = f.dir
	o.Config.Init("")
	o.Sink, o.Clock, o.Registerer = f.sink, f.clock, f.reg
	p, err := New(o)
	require.NoError(t, err)
	f.p = p
	return f
}

func web(f *foreign, caFile string) config.FederatedTrustDomainConfig {
	return config.FederatedTrustDomainConfig{TrustDomain: f.td.Name(), BundleEndpointURL: f.srv.URL, Profile: config.FederationProfileWeb, CAFile: caFile}
}

func spiffe(f *foreign, id, bootstrap string) config.FederatedTrustDomainConfig {
	return config.FederatedTrustDomainConfig{TrustDomain: f.td.Name(), BundleEndpointURL: f.srv.URL, Profile: config.FederationProfileSPIFFE,
		EndpointSPIFFEID: id, BootstrapBundle: bootstrap}
}

func (f *fixture) refresh(t *testing.T) (time.Duration, error) {
	t.Helper()
	return f.p.refresh(context.Background(), f.p.domains[0])
}

func (f *fixture) fetches(t *testing.T, outcome string) float64 {
	t.Helper()
	return gauge(t, f.reg, "meshca_federation_fetch_total", map[string]string{"trust_domain": partner, "outcome": outcome})
}

// gauge reads one sample of a gathered metric; it fails when absent.
func gauge(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := sample(t, g, name, labels)
	require.True(t, ok, "%s%v is not exported", name, labels)
	return v
}

func sample(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestRefresh_WebProfilePublishesRootsAndHonoursClampedHint(t *testing.T) {
	a := newCA(t, "partner root A", "spiffe://"+partner)
	ep := newForeign(t, partner, nil)
	ep.serve(7, 2*time.Hour, a.cert)
	f := newFixture(t, Options{}, web(ep, ep.webCAFile(t)))

	next, err := f.refresh(t)
	require.NoError(t, err)
	require.Equal(t, config.DefaultFederationMaxRefresh, next, "a 2h hint is clamped to maxRefresh")
	calls, roots := f.sink.published()
	require.Equal(t, 1, calls)
	require.Len(t, roots[partner], 1)
	require.True(t, roots[partner][0].Equal(a.cert))
	require.Equal(t, []string{partner}, f.sink.configured)
	require.Equal(t, 1.0, f.fetches(t, OutcomeUpdated))
	require.Equal(t, 7.0, gauge(t, f.reg, "meshca_federation_bundle_sequence", map[string]string{"trust_domain": partner}))

	// The bundle is kept on disk, 0600, for restarts and the snippet CLI.
	st, err := os.Stat(statePath(f.dir, partnerTD))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	kept, err := ReadSnapshot(f.dir, partnerTD)
	require.NoError(t, err)
	require.Equal(t, f.clock.Now(), kept.FetchedAt.In(time.UTC))
	require.True(t, kept.Bundle.X509Authorities()[0].Equal(a.cert))

	// The same bundle again: nothing is republished.
	ep.serve(7, time.Second, a.cert)
	next, err = f.refresh(t)
	require.NoError(t, err)
	require.Equal(t, config.DefaultFederationMinRefresh, next, "a 1s hint is raised to minRefresh")
	calls, _ = f.sink.published()
	require.Equal(t, 1, calls)
	require.Equal(t, 1.0, f.fetches(t, OutcomeUnchanged))
}

func TestRefresh_WebProfileNeedsTheEndpointsRoots(t *testing.T) {
	a := newCA(t, "partner root A", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 0, a.cert)
	f := newFixture(t, Options{}, web(ep, ""))
	_, err := f.refresh(t)
	require.ErrorContains(t, err, "certificate signed by unknown authority")
	require.Equal(t, 1.0, f.fetches(t, OutcomeError))
	calls, _ := f.sink.published()
	require.Zero(t, calls)
}

func TestRefresh_SPIFFEProfileAuthenticatesWithTheLastFetchedBundle(t *testing.T) {
	const endpointID = "spiffe://" + partner + "/spire/server"
	a, b := newCA(t, "partner root A", ""), newCA(t, "partner root B", "")
	svidA := a.svid(t, endpointID)
	ep := newForeign(t, partner, &svidA)
	ep.serve(1, 0, a.cert, b.cert)
	// Bootstrapped with A only.
	f := newFixture(t, Options{}, spiffe(ep, endpointID, writePEM(t, a.cert)))

	_, err := f.refresh(t)
	require.NoError(t, err)
	_, roots := f.sink.published()
	require.Len(t, roots[partner], 2)

	// The foreign side rotates to B: its endpoint now presents an SVID from
	// B, which only the fetched bundle (not the bootstrap) trusts.
	ep.present(b.svid(t, endpointID))
	ep.serve(2, 0, b.cert)
	_, err = f.refresh(t)
	require.NoError(t, err)
	_, roots = f.sink.published()
	require.Len(t, roots[partner], 1)
	require.True(t, roots[partner][0].Equal(b.cert))

	// An endpoint presenting another SPIFFE ID is refused.
	ep.present(b.svid(t, "spiffe://"+partner+"/impostor"))
	ep.serve(3, 0, a.cert)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, `unexpected ID "spiffe://partner.example/impostor"`)
	_, roots = f.sink.published()
	require.True(t, roots[partner][0].Equal(b.cert), "the last good bundle stays")
}

func TestRefresh_SPIFFEProfileRefusesAnEndpointOutsideTheBootstrap(t *testing.T) {
	const endpointID = "spiffe://" + partner + "/spire/server"
	a, other := newCA(t, "partner root A", ""), newCA(t, "someone else", "")
	svid := other.svid(t, endpointID)
	ep := newForeign(t, partner, &svid)
	ep.serve(1, 0, a.cert)
	f := newFixture(t, Options{}, spiffe(ep, endpointID, writePEM(t, a.cert)))
	_, err := f.refresh(t)
	require.ErrorContains(t, err, "x509svid: could not verify leaf certificate")
	require.Equal(t, 1.0, f.fetches(t, OutcomeError))
}

func TestRefresh_RefusesWrongTrustDomainAndOversizedBundlesChangingNothing(t *testing.T) {
	a := newCA(t, "partner root A", "spiffe://"+partner)
	ep := newForeign(t, partner, nil)
	ep.serve(5, 0, a.cert)
	f := newFixture(t, Options{MaxBundleBytes: 4 << 10}, web(ep, ep.webCAFile(t)))
	_, err := f.refresh(t)
	require.NoError(t, err)
	before, err := os.ReadFile(statePath(f.dir, partnerTD))
	require.NoError(t, err)

	// Another trust domain's bundle (its root names spiffe://other.example).
	ep.serve(6, 0, newCA(t, "other root", "spiffe://other.example").cert)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, `names "spiffe://other.example": the endpoint served another trust domain's bundle`)
	require.Equal(t, 1.0, f.fetches(t, OutcomeForeign))

	// Over the size limit: a bundle of many roots.
	var many []*x509.Certificate
	for range 20 {
		many = append(many, newCA(t, "partner root", "").cert)
	}
	ep.serve(7, 0, many...)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, "over the 4096-byte limit")
	require.Equal(t, 1.0, f.fetches(t, OutcomeTooLarge))

	// A bundle without authorities would publish nothing to trust.
	ep.serve(8, 0)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, "is not a SPIFFE bundle: spiffebundle: no authorities found")
	require.Equal(t, 1.0, f.fetches(t, OutcomeInvalid))

	calls, roots := f.sink.published()
	require.Equal(t, 1, calls, "a refused bundle is never published")
	require.True(t, roots[partner][0].Equal(a.cert))
	after, err := os.ReadFile(statePath(f.dir, partnerTD))
	require.NoError(t, err)
	require.Equal(t, before, after, "the kept bundle is unchanged")
	require.Equal(t, 5.0, gauge(t, f.reg, "meshca_federation_bundle_sequence", map[string]string{"trust_domain": partner}))
}

func TestRefresh_AcceptsASequenceNumberGoingBackwards(t *testing.T) {
	a, b := newCA(t, "partner root A", ""), newCA(t, "partner root B", "")
	ep := newForeign(t, partner, nil)
	ep.serve(10, 0, a.cert)
	f := newFixture(t, Options{}, web(ep, ep.webCAFile(t)))
	_, err := f.refresh(t)
	require.NoError(t, err)
	ep.serve(3, 0, b.cert) // a restored endpoint restarted its sequence
	_, err = f.refresh(t)
	require.NoError(t, err)
	_, roots := f.sink.published()
	require.True(t, roots[partner][0].Equal(b.cert))
	require.Equal(t, 3.0, gauge(t, f.reg, "meshca_federation_bundle_sequence", map[string]string{"trust_domain": partner}))
}

func TestNew_RestartPublishesTheKeptBundleBeforeAnyFetch(t *testing.T) {
	a := newCA(t, "partner root A", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 0, a.cert)
	f := newFixture(t, Options{}, web(ep, ep.webCAFile(t)))
	_, err := f.refresh(t)
	require.NoError(t, err)
	ep.srv.Close() // the foreign endpoint is down across the restart

	f2 := &sink{}
	p, err := New(Options{Config: f.p.cfg, Sink: f2, Clock: f.clock})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { c, _ := f2.published(); return c >= 1 }, 10*time.Second, 5*time.Millisecond)
	_, roots := f2.published()
	require.True(t, roots[partner][0].Equal(a.cert))
}

func TestRefresh_BoundsAStreamedResponseWithoutContentLength(t *testing.T) {
	a := newCA(t, "partner root A", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 0, a.cert)
	// The limit, not the fetch timeout, must end the read.
	const timeout = 10 * time.Second
	f := newFixture(t, Options{MaxBundleBytes: 4 << 10, FetchTimeout: timeout}, web(ep, ep.webCAFile(t)))
	_, err := f.refresh(t)
	require.NoError(t, err)
	// A chunked answer (no Content-Length) that never ends: 1 MiB, then
	// nothing until the client goes away. Only a read that stops at the
	// limit ends before the timeout.
	ep.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(`{"keys":[` + strings.Repeat(" ", 1000))
		for range 1 << 10 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	})
	start := time.Now()
	_, err = f.refresh(t)
	require.Less(t, time.Since(start), timeout/2, "the read stopped at the limit, not at the timeout")
	require.ErrorContains(t, err, "the bundle of partner.example is over the 4096-byte limit")
	require.Equal(t, 1.0, f.fetches(t, OutcomeTooLarge))
	_, roots := f.sink.published()
	require.True(t, roots[partner][0].Equal(a.cert))
}

func TestRefresh_RefusesABundleWithNoValidAuthorityChangingNothing(t *testing.T) {
	a := newCA(t, "partner root A", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 0, a.cert)
	f := newFixture(t, Options{}, web(ep, ep.webCAFile(t)))
	_, err := f.refresh(t)
	require.NoError(t, err)
	before, err := os.ReadFile(statePath(f.dir, partnerTD))
	require.NoError(t, err)
	now := f.clock.Now()

	// An endpoint restored from an old backup: only an expired root.
	expired := newCAValid(t, "partner root (expired)", "", now.Add(-48*time.Hour), now.Add(-time.Minute))
	ep.serve(2, 0, expired.cert)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, "none of the 1 X.509 authorities of partner.example is valid at "+now.Format(time.RFC3339))
	require.Equal(t, 1.0, f.fetches(t, OutcomeInvalid))

	// Only a root that is not valid yet.
	early := newCAValid(t, "partner root (future)", "", now.Add(time.Hour), now.Add(48*time.Hour))
	ep.serve(3, 0, early.cert)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, "none of the 1 X.509 authorities of partner.example is valid")
	require.Equal(t, 2.0, f.fetches(t, OutcomeInvalid))

	calls, roots := f.sink.published()
	require.Equal(t, 1, calls, "a refused bundle is never published")
	require.True(t, roots[partner][0].Equal(a.cert))
	after, err := os.ReadFile(statePath(f.dir, partnerTD))
	require.NoError(t, err)
	require.Equal(t, before, after, "the kept bundle is unchanged")

	// An expired root next to a valid one (a rotation overlap) is accepted.
	b := newCA(t, "partner root B", "")
	ep.serve(4, 0, expired.cert, b.cert)
	_, err = f.refresh(t)
	require.NoError(t, err)
	_, roots = f.sink.published()
	require.Len(t, roots[partner], 2)
	require.True(t, roots[partner][0].Equal(expired.cert))
	require.True(t, roots[partner][1].Equal(b.cert))
}

// A state file the poller would never have written (edited, or left by
// another program) is ignored like a damaged one: it is not published, and
// so cannot make the sink refuse every trust domain's roots.
func TestNew_IgnoresAKeptBundleItWouldHaveRefused(t *testing.T) {
	a := newCA(t, "partner root A", "")
	leafCert := a.svid(t, "spiffe://"+partner+"/workload")
	leaf, err := x509.ParseCertificate(leafCert.Certificate[0])
	require.NoError(t, err)
	dir := t.TempDir()
	for name, certs := range map[string][]*x509.Certificate{
		"a leaf, not a CA":       {leaf},
		"another trust domain's": {newCA(t, "other root", "spiffe://other.example").cert},
	} {
		require.NoError(t, writeSnapshot(dir, partnerTD, Snapshot{TrustDomain: partner, FetchedAt: time.Now(),
			Bundle: spiffebundle.FromX509Authorities(partnerTD, certs)}), name)
		_, err := ReadSnapshot(dir, partnerTD)
		require.Error(t, err, name)

		s := &sink{}
		cfg := config.FederationConfig{StateDir: dir, TrustDomains: []config.FederatedTrustDomainConfig{
			{TrustDomain: partner, BundleEndpointURL: "https://127.0.0.1:1", Profile: config.FederationProfileWeb}}}
		cfg.Init("")
		p, err := New(Options{Config: cfg, Sink: s})
		require.NoError(t, err, name)
		require.Empty(t, p.Snapshots(), name)
		p.Publish(context.Background())
		calls, roots := s.published()
		require.Equal(t, 1, calls, name)
		require.Empty(t, roots, name)
	}
}

// A redirect would leave the configured (authenticated) endpoint: it is not
// followed, even to a server the Web PKI roots trust serving a good bundle.
func TestRefresh_DoesNotFollowARedirect(t *testing.T) {
	a, b := newCA(t, "partner root A", ""), newCA(t, "elsewhere root", "")
	ep := newForeign(t, partner, nil)
	ep.serve(1, 0, a.cert)
	elsewhere := newForeign(t, partner, nil) // httptest's certificate too
	elsewhere.serve(2, 0, b.cert)
	f := newFixture(t, Options{}, web(ep, ep.webCAFile(t)))
	_, err := f.refresh(t)
	require.NoError(t, err)

	ep.srv.Config.Handler = http.RedirectHandler(elsewhere.srv.URL, http.StatusFound)
	_, err = f.refresh(t)
	require.ErrorContains(t, err, "the endpoint answered 302 Found")
	require.Equal(t, 1.0, f.fetches(t, OutcomeError))
	require.Zero(t, elsewhere.requests())
	calls, roots := f.sink.published()
	require.Equal(t, 1, calls)
	require.True(t, roots[partner][0].Equal(a.cert))
}

// An https_web endpoint that offers only TLS 1.1 or older is refused: no
// downgrade below TLS 1.2.
func TestRefresh_RefusesTLSBelow12(t *testing.T) {
	a := newCA(t, "partner root A", "")
	h, err := gofed.NewHandler(partnerTD, spiffebundle.FromX509Authorities(partnerTD, []*x509.Certificate{a.cert}))
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f := newFixture(t, Options{}, config.FederatedTrustDomainConfig{TrustDomain: partner, BundleEndpointURL: srv.URL,
		Profile: config.FederationProfileWeb, CAFile: writePEM(t, srv.Certificate())})
	_, err = f.refresh(t)
	require.ErrorContains(t, err, "protocol version")
	require.Equal(t, 1.0, f.fetches(t, OutcomeError))
	calls, _ := f.sink.published()
	require.Zero(t, calls)
}

// A kept bundle "fetched" in the future (an edited state file, or a clock
// that was wrong when it was written) does not stay fresh until then: its
// age counts from the start, as for a bundle never fetched.
func TestNew_AKeptBundleFromTheFutureAgesFromTheStart(t *testing.T) {
	a := newCA(t, "partner root A", "")
	dir := t.TempDir()
	clk := clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	require.NoError(t, writeSnapshot(dir, partnerTD, Snapshot{TrustDomain: partner, FetchedAt: clk.Now().Add(time.Hour),
		Bundle: spiffebundle.FromX509Authorities(partnerTD, []*x509.Certificate{a.cert})}))
	cfg := config.FederationConfig{StateDir: dir, TrustDomains: []config.FederatedTrustDomainConfig{
		{TrustDomain: partner, BundleEndpointURL: "https://127.0.0.1:1", Profile: config.FederationProfileWeb}}}
	cfg.Init("")
	reg := prometheus.NewRegistry()
	p, err := New(Options{Config: cfg, Clock: clk, Registerer: reg})
	require.NoError(t, err)
	require.Len(t, p.Snapshots(), 1, "the kept roots are still used")
	clk.Step(time.Minute)
	require.Equal(t, 60.0, gauge(t, reg, "meshca_federation_bundle_age_seconds", map[string]string{"trust_domain": partner}))
}

// federation.stateDir holds the roots meshca trusts and publishes after a
// restart: a directory others can write (where they could plant a bundle)
// is refused, with the fix.
func TestNew_RefusesAStateDirOthersCanWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "federation")
	require.NoError(t, os.Mkdir(dir, 0o700))
	require.NoError(t, os.Chmod(dir, 0o777))
	cfg := config.FederationConfig{StateDir: dir, TrustDomains: []config.FederatedTrustDomainConfig{
		{TrustDomain: partner, BundleEndpointURL: "https://127.0.0.1:1", Profile: config.FederationProfileWeb}}}
	cfg.Init("")
	_, err := New(Options{Config: cfg})
	require.EqualError(t, err, "federation.stateDir "+dir+" is writable by others (mode 0777); run chmod o-w "+dir+", or choose a private federation.stateDir")

	// A missing one is created private.
	missing := filepath.Join(t.TempDir(), "new", "federation")
	cfg.StateDir = missing
	_, err = New(Options{Config: cfg})
	require.NoError(t, err)
	st, err := os.Stat(missing)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}

// A trust domain name may be 255 bytes (SPIFFE-ID §2.3), more than a file
// name with the state file's suffix may be (NAME_MAX, 255): its bundle is
// still kept and read back.
func TestSnapshot_KeptForTheLongestTrustDomainName(t *testing.T) {
	long := spiffeid.RequireTrustDomainFromString(strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63))
	require.Len(t, long.Name(), 255)
	a := newCA(t, "long root", "")
	dir := t.TempDir()
	at := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, writeSnapshot(dir, long, Snapshot{TrustDomain: long.Name(), FetchedAt: at,
		Bundle: spiffebundle.FromX509Authorities(long, []*x509.Certificate{a.cert})}))
	s, err := ReadSnapshot(dir, long)
	require.NoError(t, err)
	require.Equal(t, at, s.FetchedAt.UTC())
	require.True(t, s.Bundle.X509Authorities()[0].Equal(a.cert))
	_, err = ReadSnapshot(dir, partnerTD)
	require.ErrorIs(t, err, fs.ErrNotExist)
}
