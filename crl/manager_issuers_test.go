package crl_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// mintGeneration mints, records and activates a new generation under the
// root, as an intermediate rotation does, and returns its id.
func (p *mgrPKI) mintGeneration(t *testing.T) uint64 {
	t.Helper()
	now := p.clk.Now()
	key := buildP256(t)
	cert := p.mintCert(t, "Manager Test Intermediate", key)
	ctx := context.Background()
	g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{p.root.Raw}, KeyRef: "test", Source: "file-minted", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, p.st.ActivateGeneration(ctx, g.ID, now))
	p.gens[g.ID] = &mgrGen{id: g.ID, cert: cert, key: key}
	p.active = g.ID
	return g.ID
}

func (p *mgrPKI) genIssuer(id uint64) crl.Issuer {
	g := p.gens[id]
	return crl.Issuer{Scope: crl.ScopeGeneration(id), Generation: id, Cert: g.cert, Signer: crl.Signer{Key: g.key}}
}

func (p *mgrPKI) rootIssuer() crl.Issuer {
	return crl.Issuer{Scope: crl.ScopeRoot, Cert: p.root, Signer: crl.Signer{Key: p.rootKey}}
}

func servedScopes(m *crl.Manager) map[string]uint64 {
	out := map[string]uint64{}
	for _, p := range m.CRLs() {
		if !p.Delta {
			out[p.Scope] = p.Number
		}
	}
	return out
}

func httpStatus(t *testing.T, h http.Handler, path string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// An intermediate rotation: generations 1 (retired) and 2 (active) are
// served; generation 3 becomes active, 2 is retained and 1 has left its
// grace period. SetIssuers builds generation 3's CRL, keeps 2's and the
// root's as they were (same numbers: nothing was rebuilt), stops serving
// 1's and its metrics, and publishes ca-crl.pem with a CRL from each
// certificate of the new cert-chain.pem. Revocations by serial in the
// retained generation and in the new one go on their CRLs; revoking the
// retained generation goes on the root's.
func TestManager_SetIssuers_RotationBuildsTheNewKeepsTheRetainedDropsTheRest(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	e.run(t)
	ctx := context.Background()
	gen1, gen2 := p.retired(), p.active
	require.Equal(t, map[string]uint64{crl.ScopeGeneration(gen1): 1, crl.ScopeGeneration(gen2): 1, crl.ScopeRoot: 1}, servedScopes(e.m))
	require.Equal(t, http.StatusOK, httpStatus(t, e.m.Handler(), "/crl/"+crl.ScopeGeneration(gen1)+".crl"))

	gen3 := p.mintGeneration(t)
	chain := []*x509.Certificate{p.gens[gen3].cert, p.root}
	require.NoError(t, e.m.SetIssuers(ctx, []crl.Issuer{p.genIssuer(gen3), p.genIssuer(gen2), p.rootIssuer()}, chain))

	require.Equal(t, map[string]uint64{crl.ScopeGeneration(gen3): 1, crl.ScopeGeneration(gen2): 1, crl.ScopeRoot: 1}, servedScopes(e.m))
	require.Equal(t, http.StatusNotFound, httpStatus(t, e.m.Handler(), "/crl/"+crl.ScopeGeneration(gen1)+".crl"))
	require.Equal(t, http.StatusOK, httpStatus(t, e.m.Handler(), "/crl/"+crl.ScopeGeneration(gen3)+".crl"))
	require.Equal(t, http.StatusOK, httpStatus(t, e.m.Handler(), "/crl/"+crl.ScopeGeneration(gen3)+"-delta.crl"))
	_, l3 := e.crl(t, crl.ScopeGeneration(gen3), false)
	require.NoError(t, l3.CheckSignatureFrom(p.gens[gen3].cert))

	require.Equal(t, 2, e.pub.count(), "ca-crl.pem published once more")
	require.Equal(t, e.pub.last(), e.m.CACRLPEM())
	got := splitPEM(t, e.pub.last())
	require.Len(t, got, 3)
	for i, c := range []*x509.Certificate{p.gens[gen3].cert, p.gens[gen2].cert, p.root} {
		require.NoError(t, got[i].CheckSignatureFrom(c), "ca-crl.pem block %d", i)
	}
	require.Equal(t, float64(p.clk.Now().Add(testValidity).Unix()),
		metricValue(t, e.reg, "meshca_crl_next_update_timestamp_seconds", map[string]string{"scope": crl.ScopeGeneration(gen3), "kind": "full"}))
	require.False(t, hasMetric(t, e.reg, "meshca_crl_next_update_timestamp_seconds", map[string]string{"scope": crl.ScopeGeneration(gen1), "kind": "full"}),
		"a dropped generation's CRL is no longer reported, so no stale-CRL alert fires for it")
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))

	// Revocations by serial: a leaf of the retained generation and one of
	// the new one.
	_, old := p.issue(t, gen2, appID, p.clk.Now().Add(time.Hour))
	_, cur := p.issue(t, gen3, appID, p.clk.Now().Add(time.Hour))
	e.revokeAndWait(t, crl.Request{Serial: old.Serial, Reason: store.ReasonKeyCompromise})
	require.Eventually(t, func() bool { return servedScopes(e.m)[crl.ScopeGeneration(gen2)] == 2 }, 5*time.Second, time.Millisecond)
	_, l2 := e.crl(t, crl.ScopeGeneration(gen2), false)
	require.Equal(t, []string{old.Serial}, serialsOf(l2))
	e.revokeAndWait(t, crl.Request{Serial: cur.Serial, Reason: store.ReasonKeyCompromise})
	require.Eventually(t, func() bool { return servedScopes(e.m)[crl.ScopeGeneration(gen3)] == 2 }, 5*time.Second, time.Millisecond)
	_, l3 = e.crl(t, crl.ScopeGeneration(gen3), false)
	require.Equal(t, []string{cur.Serial}, serialsOf(l3))
	for _, is := range []store.Issuance{old, cur} {
		revoked, err := e.m.IsRevoked(ctx, is.Serial)
		require.NoError(t, err)
		require.True(t, revoked, is.Serial)
	}

	// The whole retained generation: its intermediate goes on the root CRL.
	e.revokeAndWait(t, crl.Request{Generation: gen2, Reason: store.ReasonSuperseded})
	require.Eventually(t, func() bool { return servedScopes(e.m)[crl.ScopeRoot] == 2 }, 5*time.Second, time.Millisecond)
	_, lr := e.crl(t, crl.ScopeRoot, false)
	require.Equal(t, []string{serialHex(p.gens[gen2].cert)}, serialsOf(lr))

	// The retained generation leaves its grace period.
	require.NoError(t, e.m.SetIssuers(ctx, []crl.Issuer{p.genIssuer(gen3), p.rootIssuer()}, chain))
	require.Equal(t, map[string]uint64{crl.ScopeGeneration(gen3): 2, crl.ScopeRoot: 2}, servedScopes(e.m))
	got = splitPEM(t, e.m.CACRLPEM())
	require.Len(t, got, 2)
	require.NoError(t, got[0].CheckSignatureFrom(p.gens[gen3].cert))
	require.NoError(t, got[1].CheckSignatureFrom(p.root))
}

// A new root (root rotation: the root scope's issuer changes) rebuilds
// the root scope under the new root, with the next number of the scope
// (CRLNumber never goes back, RFC 5280 section 5.2.3).
func TestManager_SetIssuers_NewRootRebuildsTheRootScope(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	ctx := context.Background()
	p.clk.Step(time.Second) // a new thisUpdate for the rebuilt scope
	key := buildP256(t)
	newRoot, err := root.NewSelfSignedRoot(key, "Manager Test Root B", "meshca", 10*365*24*time.Hour, p.clk.Now())
	require.NoError(t, err)
	rootB := crl.Issuer{Scope: crl.ScopeRoot, Cert: newRoot, Signer: crl.Signer{Key: key}}
	// The active intermediate still chains to root A: cert-chain.pem is
	// unchanged, ca-crl.pem lacks A's CRL and is not published.
	require.NoError(t, e.m.SetIssuers(ctx, []crl.Issuer{p.genIssuer(p.active), rootB}, p.chain()))
	_, lr := e.crl(t, crl.ScopeRoot, false)
	require.NoError(t, lr.CheckSignatureFrom(newRoot))
	require.Equal(t, map[string]uint64{crl.ScopeGeneration(p.active): 1, crl.ScopeRoot: 2}, servedScopes(e.m))
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))
	require.Equal(t, 1, e.pub.count(), "nothing Istio would refuse is published")
}

// failingRootNumbers is the store with the root scope's CRL numbers
// failing while fail is set (a transient store error).
type failingRootNumbers struct {
	crl.Backend
	fail atomic.Bool
}

func (f *failingRootNumbers) NextCRLNumber(ctx context.Context, scope string) (store.CRLCut, error) {
	if f.fail.Load() && scope == crl.ScopeRoot {
		return store.CRLCut{}, errors.New("the store is unavailable")
	}
	return f.Backend.NextCRLNumber(ctx, scope)
}

// At a root switch (the root scope's issuer becomes root B, with an
// intermediate under B in cert-chain.pem) a CRL build that fails must not
// leave root A's CRL standing in for B's: the ca-crl.pem handed to Istio
// would then lack a CRL from B, which Istio and OpenSSL's CRL check refuse
// for every chain through B. Until B's CRL is built, nothing new is
// published and meshca_crl_incomplete is 1; the retry publishes it.
func TestManager_SetIssuers_AFailedBuildAtARootSwitchPublishesNoCRLForTheNewRoot(t *testing.T) {
	p := newMgrPKI(t)
	st := &failingRootNumbers{Backend: p.st}
	e := newManager(t, p, func(o *crl.Options) { o.Store = st })
	ctx := context.Background()
	p.clk.Step(time.Second)
	keyB := buildP256(t)
	rootB, err := root.NewSelfSignedRoot(keyB, "Manager Test Root B", "meshca", 10*365*24*time.Hour, p.clk.Now())
	require.NoError(t, err)
	ikey := buildP256(t)
	icert, err := root.MintIntermediate(rootB, keyB, ikey.Public(), root.IntermediateTemplate{CommonName: "Intermediate under B", Organization: "meshca", Lifetime: 365 * 24 * time.Hour}, p.clk.Now())
	require.NoError(t, err)
	g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: icert.Raw, ChainDER: [][]byte{rootB.Raw}, KeyRef: "test", Source: "file-minted", CreatedAt: p.clk.Now()})
	require.NoError(t, err)
	issuers := []crl.Issuer{
		{Scope: crl.ScopeGeneration(g.ID), Generation: g.ID, Cert: icert, Signer: crl.Signer{Key: ikey}},
		{Scope: crl.ScopeRoot, Cert: rootB, Signer: crl.Signer{Key: keyB}},
		{Scope: crl.RootScope(p.root, false), Cert: p.root, Signer: crl.Signer{Key: p.rootKey}},
	}
	chain := []*x509.Certificate{icert, rootB}
	before := e.pub.count()

	st.fail.Store(true)
	require.Error(t, e.m.SetIssuers(ctx, issuers, chain))
	for _, c := range e.m.CRLs() {
		if c.Scope == crl.ScopeRoot {
			l, err := x509.ParseRevocationList(c.DER)
			require.NoError(t, err)
			require.NoError(t, l.CheckSignatureFrom(rootB), "what is served as the root scope's CRL is B's")
		}
	}
	if e.pub.count() > before {
		missing, err := crl.MissingCRLs(chain, e.pub.last())
		require.NoError(t, err)
		require.Empty(t, missing, "a ca-crl.pem handed to Istio covers cert-chain.pem")
	}
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))

	st.fail.Store(false)
	e.run(t) // Run retries the scope that failed
	// Step once Run has seen the failed build's kick: it rebuilds at once,
	// or arms the coalescing timer (a step before that would pass it by).
	require.Eventually(t, func() bool { return e.pub.count() > before || e.clk.Waiters() > e.timers }, 5*time.Second, time.Millisecond)
	p.clk.Step(time.Minute)
	require.Eventually(t, func() bool {
		if e.pub.count() == before {
			return false
		}
		missing, err := crl.MissingCRLs(chain, e.pub.last())
		return err == nil && len(missing) == 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))
}

// Bad issuers change nothing.
func TestManager_SetIssuers_RefusesBadIssuers(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p)
	before := servedScopes(e.m)
	ctx := context.Background()
	for name, is := range map[string][]crl.Issuer{
		"no key":    {{Scope: crl.ScopeGeneration(p.active), Generation: p.active, Cert: p.gens[p.active].cert}},
		"duplicate": {p.genIssuer(p.active), p.genIssuer(p.active)},
		"none":      nil,
	} {
		require.Error(t, e.m.SetIssuers(ctx, is, p.chain()), name)
		require.Equal(t, before, servedScopes(e.m), name)
	}
	require.Equal(t, 1, e.pub.count())
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// hasMetric reports whether the series name{labels} is exported.
func hasMetric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) bool {
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
			return true
		}
	}
	return false
}
