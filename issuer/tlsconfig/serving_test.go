package tlsconfig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/tlsconfig"
	"github.com/meshca/meshca/rotation/intermediate"
)

const servingName = "meshca.istio-system.svc"

// testBackoff has no jitter, so that retries land on exact clock steps:
// 1s, 2s, 4s, then 4s.
var testBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Steps: math.MaxInt32, Cap: 4 * time.Second}

// recordMode is what the record store does with PutIssuance.
type recordMode int32

const (
	recordOK    recordMode = iota
	recordFail             // a full disk: the write fails
	recordBlock            // a stalled disk: the write hangs until released
)

// gatedRecords is the real bbolt record store behind a switch, so that
// serving-certificate issuance fails or stalls the way a sick disk makes it.
type gatedRecords struct {
	store.Issuances
	mode    atomic.Int32
	calls   atomic.Int32
	release chan struct{}
}

func (g *gatedRecords) PutIssuance(ctx context.Context, r store.Issuance) error {
	g.calls.Add(1)
	switch recordMode(g.mode.Load()) {
	case recordFail:
		return errors.New("no space left on device")
	case recordBlock:
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Issuances.PutIssuance(ctx, r)
}

// testCA is a real CA: a file root, softkms keys and a bbolt store, opened
// by authority.Open as `meshca serve` does, and an Authority on the same
// material and store whose record writes the test can fail or stall and
// whose clock is the test's fake clock.
type testCA struct {
	rt      *authority.Runtime
	mgr     *intermediate.Manager
	cfg     *config.Config
	roots   *x509.CertPool
	clk     *testingclock.FakeClock
	records *gatedRecords
	auth    *authority.Authority
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	km, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	signer, p, err := km.Create("root-tmp", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Rename(p, filepath.Join(dir, config.RootKeyFile)))
	require.NoError(t, km.Close())
	rc, err := root.NewSelfSignedRoot(signer, "test root", "meshca-test", 365*24*time.Hour, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg.Root.File.RootCert, root.EncodePEM(rc), 0o644))

	rt, mgr, err := openCAManager(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(rc)
	pol, err := authority.PolicyFromConfig(cfg)
	require.NoError(t, err)
	clk := testingclock.NewFakeClock(time.Now())
	g := &gatedRecords{Issuances: rt.Store, release: make(chan struct{})}
	t.Cleanup(func() { close(g.release) })
	a := authority.New(rt.Authority.Material(), pol, g,
		authority.WithClock(clk.Now), authority.WithAudit(audit.New(slog.New(slog.DiscardHandler))))
	return &testCA{rt: rt, mgr: mgr, cfg: cfg, roots: roots, clk: clk, records: g, auth: a}
}

// nextGeneration has the rotation manager mint, verify and activate a
// second intermediate under the same root (no subscriber: the test's own
// authority keeps signing with the first until it switches).
func (c *testCA) nextGeneration(t *testing.T) *authority.Material {
	t.Helper()
	cur := c.auth.Material()
	next, err := c.mgr.RotateNow(context.Background(), "test")
	require.NoError(t, err)
	require.NotEqual(t, cur.Generation, next.Generation)
	return next
}

// servingRecords counts the serving certificates recorded.
func (c *testCA) servingRecords(t *testing.T) int {
	t.Helper()
	n := 0
	require.NoError(t, c.rt.Store.ListIssuances(context.Background(), func(r store.Issuance) bool {
		if r.Profile == authority.ProfileServing {
			n++
		}
		return true
	}))
	return n
}

func (c *testCA) serving(reg prometheus.Registerer) *tlsconfig.ServingCert {
	return &tlsconfig.ServingCert{
		Authority:  c.auth,
		DNSNames:   []string{servingName},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		TTL:        time.Hour,
		Clock:      c.clk,
		Backoff:    testBackoff,
		Log:        slog.New(slog.DiscardHandler),
		Registerer: reg,
	}
}

// start starts s until the test ends and waits for its loop to park.
func (c *testCA) start(t *testing.T, s *tlsconfig.ServingCert) {
	t.Helper()
	require.NoError(t, s.Start(t.Context()))
	c.parked(t)
}

// parked waits until the renewal loop waits on the fake clock.
func (c *testCA) parked(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return c.clk.Waiters() == 1 }, 10*time.Second, time.Millisecond,
		"the renewal loop does not wait on the clock")
}

// step moves the fake clock and waits for the loop to park again.
func (c *testCA) step(t *testing.T, d time.Duration) {
	t.Helper()
	c.clk.Step(d)
	c.parked(t)
}

// renewAt is two thirds through leaf's validity.
func renewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * 2 / 3))
}

// metric is the value of the series name{labels} in reg, NaN if absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

func renewals(t *testing.T, reg *prometheus.Registry, result string) float64 {
	return metric(t, reg, "meshca_serving_cert_renewals_total", map[string]string{"result": result})
}

func expiry(t *testing.T, reg *prometheus.Registry) float64 {
	return metric(t, reg, "meshca_serving_cert_expiry_timestamp_seconds", nil)
}

func TestServingCert_StartIssuesACertificateChainingToTheMeshRoot(t *testing.T) {
	ca := newTestCA(t)
	reg := prometheus.NewRegistry()
	s := ca.serving(reg)
	require.Nil(t, s.Current(), "nothing is issued before Start")
	_, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: servingName})
	require.ErrorIs(t, err, tlsconfig.ErrNotIssued)

	ca.start(t, s)
	c := s.Current()
	m := ca.auth.Material()
	leaf := c.Leaf
	require.Same(t, leaf, s.Leaf())
	require.Equal(t, []string{servingName}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 1)
	require.True(t, leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)))
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
	require.Equal(t, time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore), "TTL plus the backdate")

	require.Len(t, c.Certificate, 2, "leaf and intermediate, without the root")
	require.Equal(t, leaf.Raw, c.Certificate[0])
	require.Equal(t, m.Bundle.Cert.Raw, c.Certificate[1])
	inters := x509.NewCertPool()
	inters.AddCert(m.Bundle.Cert)
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: servingName, Roots: ca.roots, Intermediates: inters})
	require.NoError(t, err)

	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	require.True(t, ok)
	require.True(t, key.PublicKey.Equal(leaf.PublicKey), "the private key matches the leaf")
	require.Equal(t, 1, ca.servingRecords(t), "the serving certificate is recorded")
	require.Equal(t, 1.0, renewals(t, reg, "success"))
	require.Equal(t, 0.0, renewals(t, reg, "failure"))
	require.Equal(t, float64(leaf.NotAfter.Unix()), expiry(t, reg))
	require.Error(t, s.Start(t.Context()), "a second Start is refused")
}

func TestServingCert_StartFailsClearlyWhenTheFirstIssuanceFails(t *testing.T) {
	ca := newTestCA(t)
	ca.records.mode.Store(int32(recordFail))
	s := ca.serving(prometheus.NewRegistry())
	err := s.Start(t.Context())
	require.ErrorContains(t, err, "issuing meshca's serving certificate: ")
	require.Equal(t, caerr.Unavailable, caerr.CodeOf(err))
	require.Equal(t, "store_unavailable", caerr.ReasonOf(err))
	require.Nil(t, s.Leaf())
	_, err = s.GetCertificate(&tls.ClientHelloInfo{ServerName: servingName})
	require.ErrorIs(t, err, tlsconfig.ErrNotIssued)
	require.Zero(t, ca.clk.Waiters(), "no renewal loop runs after a failed Start")
	require.Equal(t, 0, ca.servingRecords(t))

	ca.records.mode.Store(int32(recordOK))
	require.NoError(t, s.Start(t.Context()), "Start can be retried")
	require.NotNil(t, s.Leaf())
}

func TestServingCert_HandshakesReadTheCurrentCertificateWithoutIssuing(t *testing.T) {
	ca := newTestCA(t)
	s := ca.serving(nil)
	ca.start(t, s)
	srv, err := tlsconfig.Server(tlsconfig.Default, s.GetCertificate)
	require.NoError(t, err)
	client := &tls.Config{RootCAs: ca.roots, ServerName: servingName}
	for range 3 {
		r := handshake(t, srv, client)
		require.NoError(t, r.clientErr, "istio-agent's view: SNI name and mesh root verify")
		require.NoError(t, r.serverErr)
		require.Len(t, r.client.PeerCertificates, 2)
		require.Equal(t, s.Leaf().Raw, r.client.PeerCertificates[0].Raw)
	}

	got := make([]*tls.Certificate, 16)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i], _ = s.GetCertificate(&tls.ClientHelloInfo{ServerName: servingName}) })
	}
	wg.Wait()
	for _, c := range got {
		require.Same(t, s.Current(), c)
	}
	require.Equal(t, 1, ca.servingRecords(t), "one issuance for all handshakes")
	require.EqualValues(t, 1, ca.records.calls.Load())
}

func TestServingCert_RenewsInTheBackgroundAtTwoThirdsOfItsLifetime(t *testing.T) {
	ca := newTestCA(t)
	reg := prometheus.NewRegistry()
	s := ca.serving(reg)
	ca.start(t, s)
	first := s.Current()
	due := renewAt(first.Leaf)

	ca.step(t, due.Add(-time.Nanosecond).Sub(ca.clk.Now()))
	require.Same(t, first, s.Current(), "still fresh just before two thirds of its lifetime")
	require.Equal(t, 1, ca.servingRecords(t))

	ca.step(t, time.Nanosecond)
	second := s.Current()
	require.NotSame(t, first, second)
	require.NotEqual(t, first.Leaf.SerialNumber, second.Leaf.SerialNumber)
	require.False(t, first.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(second.Leaf.PublicKey), "a renewal uses a new key")
	require.Equal(t, due.Add(-policy.Backdate).Truncate(time.Second), second.Leaf.NotBefore, "issued at the renewal time")
	require.Equal(t, 2, ca.servingRecords(t))
	require.Equal(t, 2.0, renewals(t, reg, "success"))
	require.Equal(t, float64(second.Leaf.NotAfter.Unix()), expiry(t, reg))
}

func TestServingCert_RenewsWhenTheCAGenerationChanges(t *testing.T) {
	ca := newTestCA(t)
	s := ca.serving(nil)
	ca.start(t, s)
	first := s.Current()
	old := ca.auth.Material()

	next := ca.nextGeneration(t)
	ca.step(t, tlsconfig.DefaultRotationPoll)
	require.Same(t, first, s.Current(), "a minted but inactive generation changes nothing")

	ca.auth.SetMaterial(next)
	ca.step(t, tlsconfig.DefaultRotationPoll-time.Nanosecond)
	require.Same(t, first, s.Current(), "seen at the next poll")
	ca.step(t, time.Nanosecond)
	second := s.Current()
	require.NotSame(t, first, second)
	require.NoError(t, second.Leaf.CheckSignatureFrom(next.Bundle.Cert), "issued by the new intermediate")
	require.Error(t, second.Leaf.CheckSignatureFrom(old.Bundle.Cert))
	require.Equal(t, next.Bundle.Cert.Raw, second.Certificate[1], "the chain carries the new intermediate")
	ca.step(t, tlsconfig.DefaultRotationPoll)
	require.Same(t, second, s.Current(), "renewed once per generation")
	require.Equal(t, 2, ca.servingRecords(t))

	srv, err := tlsconfig.Server(tlsconfig.Default, s.GetCertificate)
	require.NoError(t, err)
	r := handshake(t, srv, &tls.Config{RootCAs: ca.roots, ServerName: servingName})
	require.NoError(t, r.clientErr, "clients still verify against the same mesh root")
	require.NoError(t, r.serverErr)
	require.Equal(t, second.Leaf.Raw, r.client.PeerCertificates[0].Raw)
}

// The regression of issue #9: renewal ran on the handshake path, so a
// stalled record write stalled every handshake.
func TestServingCert_AStalledIssuanceDoesNotStallHandshakes(t *testing.T) {
	ca := newTestCA(t)
	s := ca.serving(nil)
	ca.start(t, s)
	first := s.Current()

	ca.records.mode.Store(int32(recordBlock))
	ca.auth.SetMaterial(ca.nextGeneration(t)) // renewal is due at once
	ca.clk.Step(tlsconfig.DefaultRotationPoll)
	require.Eventually(t, func() bool { return ca.records.calls.Load() == 2 }, 10*time.Second, time.Millisecond,
		"the renewal is under way and stalled")

	srv, err := tlsconfig.Server(tlsconfig.Default, s.GetCertificate)
	require.NoError(t, err)
	done := make(chan handshakeResult, 1)
	go func() { done <- handshake(t, srv, &tls.Config{RootCAs: ca.roots, ServerName: servingName}) }()
	select {
	case r := <-done:
		require.NoError(t, r.clientErr)
		require.NoError(t, r.serverErr)
		require.Equal(t, first.Leaf.Raw, r.client.PeerCertificates[0].Raw, "the current certificate, still valid")
	case <-time.After(3 * time.Second):
		t.Fatal("the handshake is stalled by a blocked serving-certificate renewal")
	}
}

func TestServingCert_FailedRenewalsRetryWithCappedBackoffAndRecover(t *testing.T) {
	ca := newTestCA(t)
	reg := prometheus.NewRegistry()
	s := ca.serving(reg)
	ca.start(t, s)
	first := s.Current()

	ca.records.mode.Store(int32(recordFail)) // the disk is full
	ca.step(t, renewAt(first.Leaf).Sub(ca.clk.Now()))
	require.EqualValues(t, 2, ca.records.calls.Load(), "renewal attempted when due")
	require.Equal(t, 1.0, renewals(t, reg, "failure"))

	calls := int32(2)
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		ca.step(t, d-time.Nanosecond)
		require.Equal(t, calls, ca.records.calls.Load(), "no retry before %s", d)
		ca.step(t, time.Nanosecond)
		calls++
		require.Equal(t, calls, ca.records.calls.Load(), "a retry after %s", d)
		c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: servingName})
		require.NoError(t, err, "a failed renewal is not a handshake failure")
		require.Same(t, first, c)
	}
	require.Equal(t, 5.0, renewals(t, reg, "failure"))
	require.Equal(t, 1.0, renewals(t, reg, "success"))
	require.Equal(t, float64(first.Leaf.NotAfter.Unix()), expiry(t, reg))
	require.Equal(t, 1, ca.servingRecords(t))

	ca.records.mode.Store(int32(recordOK)) // space is freed
	ca.step(t, 4*time.Second)
	second := s.Current()
	require.NotSame(t, first, second, "the next retry renews")
	require.Equal(t, 2.0, renewals(t, reg, "success"))
	require.Equal(t, 5.0, renewals(t, reg, "failure"))
	require.Equal(t, float64(second.Leaf.NotAfter.Unix()), expiry(t, reg))
	require.Equal(t, 2, ca.servingRecords(t))

	// A later failure streak starts again from the initial delay.
	ca.records.mode.Store(int32(recordFail))
	ca.step(t, renewAt(second.Leaf).Sub(ca.clk.Now()))
	require.Equal(t, 6.0, renewals(t, reg, "failure"))
	ca.step(t, time.Second)
	require.Equal(t, 7.0, renewals(t, reg, "failure"))
}

func TestServingCert_RunReturnsWhenItsContextEnds(t *testing.T) {
	ca := newTestCA(t)
	s := ca.serving(nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ca.parked(t)
	require.NotNil(t, s.Leaf())
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run does not return after its context ends")
	}
	require.Eventually(t, func() bool { return ca.clk.Waiters() == 0 }, 10*time.Second, time.Millisecond)
}

func TestDefaultBackoff_DoublesFromOneSecondToOneMinuteWithJitter(t *testing.T) {
	next := tlsconfig.DefaultBackoff.DelayFunc()
	base := time.Second
	for range 12 {
		d := next()
		require.GreaterOrEqual(t, d, base/2)
		require.LessOrEqual(t, d, base)
		base = min(2*base, time.Minute)
	}
}

// Reissue, called by the rotation fan-out on activation, moves the serving
// certificate to the new generation at once, without waiting for the
// poll; a second call, and the loop's next poll, issue nothing more.
func TestServingCert_ReissueMovesToTheNewGenerationAtOnce(t *testing.T) {
	ca := newTestCA(t)
	s := ca.serving(nil)
	ca.start(t, s)
	first := s.Current()
	require.NoError(t, s.Reissue(t.Context()))
	require.Same(t, first, s.Current(), "the same generation: nothing to do")

	next := ca.nextGeneration(t)
	ca.auth.SetMaterial(next)
	require.NoError(t, s.Reissue(t.Context()))
	second := s.Current()
	require.NotSame(t, first, second)
	require.NoError(t, second.Leaf.CheckSignatureFrom(next.Bundle.Cert), "issued by the new intermediate")
	require.Equal(t, next.Bundle.Cert.Raw, second.Certificate[1], "the chain carries the new intermediate")
	require.NoError(t, s.Reissue(t.Context()))
	ca.step(t, tlsconfig.DefaultRotationPoll)
	require.Same(t, second, s.Current(), "renewed once per generation")
	require.Equal(t, 2, ca.servingRecords(t))

	// A failed reissue keeps the current certificate and says so.
	third := ca.nextGeneration(t)
	ca.records.mode.Store(int32(recordFail))
	ca.auth.SetMaterial(third)
	require.ErrorContains(t, s.Reissue(t.Context()), "no space left on device")
	require.Same(t, second, s.Current())
}
