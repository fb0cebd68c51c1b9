package crl_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/crl"
)

// published records every ca-crl.pem handed to the trust distribution.
type published struct {
	mu   sync.Mutex
	pems [][]byte
	// fail, while set, fails the next publications (an apiserver error)
	// and counts them in failed.
	fail   error
	failed int
}

func (p *published) publish(_ context.Context, b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		p.failed++
		return p.fail
	}
	p.pems = append(p.pems, bytes.Clone(b))
	return nil
}

// failing sets or clears the publication error.
func (p *published) failing(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

func (p *published) failures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *published) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pems)
}

func (p *published) last() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pems[len(p.pems)-1]
}

type mgrEnv struct {
	*mgrPKI
	m   *crl.Manager
	pub *published
	reg *prometheus.Registry
	// timers is how many timers and tickers the idle loop holds.
	timers int
}

const testValidity = 24 * time.Hour

func newManager(t *testing.T, p *mgrPKI, mutate ...func(*crl.Options)) *mgrEnv {
	t.Helper()
	e := &mgrEnv{mgrPKI: p, pub: &published{}, reg: prometheus.NewRegistry()}
	o := crl.Options{
		Store: p.st, Issuers: p.issuers(), Chain: p.chain(), Validity: testValidity, Republish: testValidity / 2,
		Coalesce: 200 * time.Millisecond, URL: "http://meshca.test:15014/crl", Publish: e.pub.publish,
		Clock: p.clk, Registerer: e.reg,
	}
	for _, f := range mutate {
		f(&o)
	}
	m, err := crl.NewManager(o)
	require.NoError(t, err)
	require.NoError(t, m.Start(context.Background()))
	e.m = m
	e.timers = 1 // the republish timer
	if o.External != nil {
		e.timers++ // the external CRL's poll
	}
	return e
}

// run starts the manager's loop and waits until it has set its timers.
func (e *mgrEnv) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return e.clk.Waiters() >= e.timers }, 5*time.Second, time.Millisecond)
}

// stepPastCoalescing waits until Run has set the coalescing timer of a
// revocation (a step before it exists would pass it by, which raced on a
// loaded machine), then steps the clock by d.
func (e *mgrEnv) stepPastCoalescing(t *testing.T, d time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return e.clk.Waiters() > e.timers }, 5*time.Second, time.Millisecond, "the coalescing timer")
	e.clk.Step(d)
}

// published waits until ca-crl.pem has been handed over n times and the
// distribution point serves the last one: it swaps in the published bytes
// just after the hand-over returns.
func (e *mgrEnv) published(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		return e.pub.count() == n && bytes.Equal(e.m.CACRLPEM(), e.pub.last())
	}, 5*time.Second, time.Millisecond)
}

func (e *mgrEnv) crl(t *testing.T, scope string, delta bool) (crl.Published, *x509.RevocationList) {
	t.Helper()
	for _, p := range e.m.CRLs() {
		if p.Scope == scope && p.Delta == delta {
			l, err := x509.ParseRevocationList(p.DER)
			require.NoError(t, err)
			return p, l
		}
	}
	t.Fatalf("no CRL %s (delta %v) served", scope, delta)
	return crl.Published{}, nil
}

func serialsOf(l *x509.RevocationList) []string {
	var out []string
	for _, e := range l.RevokedCertificateEntries {
		out = append(out, hex.EncodeToString(e.SerialNumber.Bytes()))
	}
	return out
}

func splitPEM(t *testing.T, b []byte) []*x509.RevocationList {
	t.Helper()
	var out []*x509.RevocationList
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			require.Empty(t, bytes.TrimSpace(rest))
			return out
		}
		require.Equal(t, "X509 CRL", block.Type)
		l, err := x509.ParseRevocationList(block.Bytes)
		require.NoError(t, err)
		out = append(out, l)
	}
}

func TestManager_StartBuildsAndPublishesEveryCRL(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	now := p.clk.Now().UTC()
	scopes := []string{crl.ScopeGeneration(p.active), crl.ScopeGeneration(p.retired()), crl.ScopeRoot}
	issuers := []*x509.Certificate{p.gens[p.active].cert, p.gens[p.retired()].cert, p.root}
	for i, s := range scopes {
		full, fl := e.crl(t, s, false)
		delta, dl := e.crl(t, s, true)
		require.NoError(t, fl.CheckSignatureFrom(issuers[i]), s)
		require.NoError(t, dl.CheckSignatureFrom(issuers[i]), s)
		require.Equal(t, uint64(1), full.Number, "%s: the first number of the scope", s)
		require.Equal(t, uint64(1), delta.Number, "%s: a full and a delta CRL issued at the same time have the same number (RFC 5280 section 5.2.3)", s)
		require.Equal(t, now, fl.ThisUpdate)
		require.Equal(t, now.Add(testValidity), fl.NextUpdate)
		require.Equal(t, []string{"http://meshca.test:15014/crl/" + s + "-delta.crl"}, freshest(t, fl), s)
		require.Equal(t, uint64(1), deltaIndicator(t, dl), "%s: the delta's base is the full CRL made at start", s)
	}
	require.Equal(t, 1, e.pub.count())
	got := splitPEM(t, e.pub.last())
	require.Len(t, got, 3, "ca-crl.pem: both generations, then the root")
	for i, l := range got {
		require.Equal(t, issuers[i].RawSubject, l.RawIssuer)
	}
	require.Equal(t, e.pub.last(), e.m.CACRLPEM())
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_crl_number", map[string]string{"scope": crl.ScopeRoot, "kind": "full"}))
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_crl_number", map[string]string{"scope": crl.ScopeRoot, "kind": "delta"}))
	require.Equal(t, float64(now.Add(testValidity).Unix()), metricValue(t, e.reg, "meshca_crl_next_update_timestamp_seconds", map[string]string{"scope": crl.ScopeRoot, "kind": "full"}))
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_entries", map[string]string{"scope": crl.ScopeRoot, "kind": "full"}))
}

var (
	mgrOIDDeltaIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	mgrOIDFreshest       = asn1.ObjectIdentifier{2, 5, 29, 46}
)

func extValue(l *x509.RevocationList, oid asn1.ObjectIdentifier) []byte {
	for _, e := range l.Extensions {
		if e.Id.Equal(oid) {
			return e.Value
		}
	}
	return nil
}

// deltaIndicator is the BaseCRLNumber of a delta CRL (RFC 5280 5.2.4), 0
// for a full CRL.
func deltaIndicator(t *testing.T, l *x509.RevocationList) uint64 {
	t.Helper()
	v := extValue(l, mgrOIDDeltaIndicator)
	if v == nil {
		return 0
	}
	var n *big.Int
	rest, err := asn1.Unmarshal(v, &n)
	require.NoError(t, err)
	require.Empty(t, rest)
	return n.Uint64()
}

// freshest is the URIs of the FreshestCRL extension (RFC 5280 5.2.6),
// which has the syntax of cRLDistributionPoints.
func freshest(t *testing.T, l *x509.RevocationList) []string {
	t.Helper()
	v := extValue(l, mgrOIDFreshest)
	if v == nil {
		return nil
	}
	type dpName struct {
		FullName []asn1.RawValue `asn1:"optional,tag:0"`
	}
	type dp struct {
		DistributionPoint dpName `asn1:"optional,tag:0"`
	}
	var dps []dp
	_, err := asn1.Unmarshal(v, &dps)
	require.NoError(t, err)
	var out []string
	for _, d := range dps {
		for _, n := range d.DistributionPoint.FullName {
			require.Equal(t, 6, n.Tag)
			out = append(out, string(n.Bytes))
		}
	}
	return out
}

func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}
