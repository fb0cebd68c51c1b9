package crl_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/crl"
)

// When ca-crl.pem would not fit the ConfigMap, the last good one stays
// published, meshca_crl_oversize is 1, and HTTP still serves the new CRLs.
func TestManager_OversizeKeepsTheLastGoodCaCRL(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p, func(o *crl.Options) { o.MaxPublishBytes = 3000 })
	e.run(t)
	good := e.pub.last()
	require.Less(t, len(good), 3000)
	size, limit := e.m.Oversize()
	require.Equal(t, [2]int{0, 3000}, [2]int{size, limit}, "nothing refused yet")
	for range 40 {
		_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
		_, err := e.m.Revoke(context.Background(), crl.Request{Serial: is.Serial})
		require.NoError(t, err)
	}
	e.stepPastCoalescing(t, time.Second) // past the coalescing window and into the next second (a rebuild waits for a new thisUpdate)
	require.Eventually(t, func() bool {
		full, _ := e.crl(t, crl.ScopeGeneration(p.active), false)
		return full.Number == 2
	}, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		return metricValue(t, e.reg, "meshca_crl_oversize", nil) == 1
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, e.pub.count(), "nothing new handed to the trust distribution")
	require.Equal(t, good, e.m.CACRLPEM(), "the last good ca-crl.pem is what is served as ca-crl.pem")
	var refused []byte
	for _, c := range e.m.CRLs() {
		if !c.Delta {
			refused = append(refused, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.DER})...)
		}
	}
	size, limit = e.m.Oversize()
	require.Equal(t, [2]int{len(refused), 3000}, [2]int{size, limit}, "the refused ca-crl.pem's size, for the CACRLTooLarge alert")
	_, fl := e.crl(t, crl.ScopeGeneration(p.active), false)
	require.Len(t, fl.RevokedCertificateEntries, 40, "the distribution point serves the new CRL")
}

// Istio refuses a ca-crl.pem without a CRL from every certificate of
// cert-chain.pem: meshca does not publish one.
func TestManager_PublishesOnlyACompleteCaCRL(t *testing.T) {
	p := newMgrPKI(t)
	e := &mgrEnv{mgrPKI: p, pub: &published{}}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	m, err := crl.NewManager(crl.Options{
		Store: p.st, Issuers: p.issuers()[:2], Chain: p.chain(), Validity: testValidity,
		Coalesce: time.Millisecond, Publish: e.pub.publish, Clock: p.clk, Registerer: reg,
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, m.Start(context.Background()), "serve starts; the CRLs are served over HTTP")
	require.Contains(t, logs.String(), `ca-crl.pem is not published: Istio refuses a ca-crl.pem without a CRL from every certificate in cert-chain.pem`)
	require.Contains(t, logs.String(), `missing="[CN=Manager Test Root,O=meshca]"`)
	require.Equal(t, 1.0, metricValue(t, reg, "meshca_crl_incomplete", nil))
	require.Zero(t, e.pub.count())
	require.Nil(t, m.CACRLPEM())
	require.Len(t, m.CRLs(), 4, "the generations' CRLs are served all the same")
}

// staticSource is a RootCRLSource whose CRL the test replaces.
type staticSource struct {
	crl atomic.Pointer[x509.RevocationList]
}

func (s *staticSource) CurrentCRL() *x509.RevocationList { return s.crl.Load() }

// externalRootCRL is a CRL numbered n that p's root signs now, as Vault or
// a file would hold it.
func externalRootCRL(t *testing.T, p *mgrPKI, n int64) *x509.RevocationList {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(n), ThisUpdate: p.clk.Now(), NextUpdate: p.clk.Now().Add(time.Hour),
	}, p.root, p.rootKey)
	require.NoError(t, err)
	l, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return l
}

// An external root CRL (Vault, a file, a URL) completes ca-crl.pem, after
// meshca's own; a new one is published when the source has it.
func TestManager_ExternalRootCRLFollowsTheSource(t *testing.T) {
	p := newMgrPKI(t)
	src := &staticSource{}
	rootCRL := func(n int64) *x509.RevocationList { return externalRootCRL(t, p, n) }
	// Vault may answer only after start: nothing is published until then.
	e := newManager(t, p, func(o *crl.Options) { o.Issuers = o.Issuers[:2]; o.External = src })
	e.run(t)
	require.Zero(t, e.pub.count())
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))
	src.crl.Store(rootCRL(7))
	p.clk.Step(5 * time.Second)
	require.Eventually(t, func() bool { return e.pub.count() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))
	got := splitPEM(t, e.pub.last())
	require.Len(t, got, 3)
	require.Equal(t, p.root.RawSubject, got[2].RawIssuer)
	require.Equal(t, int64(7), got[2].Number.Int64())
	ext, _ := e.crl(t, crl.ScopeRootExternal, false)
	require.Equal(t, uint64(7), ext.Number)

	src.crl.Store(rootCRL(8))
	p.clk.Step(5 * time.Second)
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	got = splitPEM(t, e.pub.last())
	require.Len(t, got, 3)
	require.Equal(t, int64(8), got[2].Number.Int64())
}

// A new external root CRL whose publication fails (an apiserver error) is
// published at a later poll: the follower must not take the CRL it failed
// to hand over as handed over, or the ConfigMaps keep the old root CRL
// until the next revocation or scheduled republication, perhaps past its
// nextUpdate.
func TestManager_ExternalRootCRLIsPublishedAfterAFailedPublication(t *testing.T) {
	p := newMgrPKI(t)
	src := &staticSource{}
	rootCRL := func(n int64) *x509.RevocationList { return externalRootCRL(t, p, n) }
	src.crl.Store(rootCRL(7))
	e := newManager(t, p, func(o *crl.Options) { o.Issuers = o.Issuers[:2]; o.External = src })
	e.run(t)
	require.Equal(t, 1, e.pub.count())

	e.pub.failing(errors.New("the apiserver is unavailable"))
	src.crl.Store(rootCRL(8))
	p.clk.Step(5 * time.Second)
	require.Eventually(t, func() bool { return e.pub.failures() > 0 }, 5*time.Second, time.Millisecond)
	e.pub.failing(nil)
	for range 10 {
		p.clk.Step(5 * time.Second)
		if e.pub.count() == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond,
		"root CRL 8 is published once the apiserver answers again")
	got := splitPEM(t, e.pub.last())
	require.Equal(t, int64(8), got[len(got)-1].Number.Int64())
}

// setSource is a root.CRLSet (a root rotation's source) whose CRLs the
// test replaces.
type setSource struct {
	staticSource
	held atomic.Pointer[[]root.HeldCRL]
}

func (s *setSource) CurrentCRLs() []root.HeldCRL {
	if h := s.held.Load(); h != nil {
		return *h
	}
	return nil
}

func (s *setSource) set(h ...root.HeldCRL) { s.held.Store(&h) }

// During a rotation between two roots whose CRLs meshca takes from their
// sources (Vault mounts), ca-crl.pem holds both: a leaf under the old
// root stays in use until the old root is removed, and a relying party
// that checks every CA of a chain needs a CRL from that root too. The
// minting root's is served as root-external, the other's under a name of
// its own; once only one is in force the other leaves ca-crl.pem, the
// distribution point and the metrics.
func TestManager_BothRootsCRLsDuringARotation(t *testing.T) {
	p := newMgrPKI(t)
	keyB := buildP256(t)
	rootB, err := root.NewSelfSignedRoot(keyB, "Manager Test Root B", "meshca", 10*365*24*time.Hour, p.clk.Now())
	require.NoError(t, err)
	crlOf := func(ca *x509.Certificate, key crypto.Signer, n int64) *x509.RevocationList {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: p.clk.Now(), NextUpdate: p.clk.Now().Add(time.Hour),
		}, ca, key)
		require.NoError(t, err)
		l, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		return l
	}
	src := &setSource{}
	a1, b1 := crlOf(p.root, p.rootKey, 7), crlOf(rootB, keyB, 3)
	src.set(root.HeldCRL{CRL: a1, Minting: true}, root.HeldCRL{CRL: b1})
	e := newManager(t, p, func(o *crl.Options) { o.Issuers = o.Issuers[:2]; o.External = src })
	e.run(t)
	require.Equal(t, 1, e.pub.count())
	got := splitPEM(t, e.pub.last())
	require.Len(t, got, 4, "two generations, then A's and B's")
	require.Equal(t, [][]byte{a1.Raw, b1.Raw}, [][]byte{got[2].Raw, got[3].Raw})
	scopeB := crl.ExternalScope(b1)
	require.Regexp(t, `^root-external-[0-9a-f]{16}$`, scopeB)
	require.False(t, crl.IsRootScope(scopeB), "not a root whose key meshca holds")
	pa, _ := e.crl(t, crl.ScopeRootExternal, false)
	pb, _ := e.crl(t, scopeB, false)
	require.Equal(t, [2]uint64{7, 3}, [2]uint64{pa.Number, pb.Number})
	require.Equal(t, 3.0, metricValue(t, e.reg, "meshca_crl_number", map[string]string{"scope": scopeB, "kind": "full"}))

	// The switch: B mints, and cert-chain.pem ends in B (its intermediate
	// stands for the one under B: ca-crl.pem must hold a CRL from each);
	// A's CRL is served under a name of its own.
	b2 := crlOf(rootB, keyB, 4)
	src.set(root.HeldCRL{CRL: b2, Minting: true}, root.HeldCRL{CRL: a1})
	require.NoError(t, e.m.SetIssuers(context.Background(), p.issuers()[:2], []*x509.Certificate{p.gens[p.active].cert, rootB}))
	require.Eventually(t, func() bool { return e.pub.count() == 2 }, 5*time.Second, time.Millisecond)
	got = splitPEM(t, e.pub.last())
	require.Equal(t, [][]byte{b2.Raw, a1.Raw}, [][]byte{got[2].Raw, got[3].Raw})
	scopeA := crl.ExternalScope(a1)
	require.NotEqual(t, scopeA, scopeB)
	pa, _ = e.crl(t, scopeA, false)
	require.Equal(t, uint64(7), pa.Number)
	require.False(t, hasMetric(t, e.reg, "meshca_crl_number", map[string]string{"scope": scopeB}), "B is root-external now")
	require.Equal(t, 4.0, metricValue(t, e.reg, "meshca_crl_number", map[string]string{"scope": crl.ScopeRootExternal, "kind": "full"}))

	// A's source not answering (meshca restarted while A's Vault is
	// down): a ca-crl.pem without A's CRL is not published, the last good
	// one stays, and so does A's CRL at the distribution point.
	src.set(root.HeldCRL{CRL: b2, Minting: true}, root.HeldCRL{Root: p.root})
	p.clk.Step(5 * time.Second)
	require.Eventually(t, func() bool {
		return metricValue(t, e.reg, "meshca_crl_incomplete", nil) == 1
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, 2, e.pub.count(), "nothing published without A's CRL")
	require.Equal(t, e.pub.last(), e.m.CACRLPEM(), "the last good ca-crl.pem is still served")
	src.set(root.HeldCRL{CRL: b2, Minting: true}, root.HeldCRL{CRL: a1, Root: p.root})
	p.clk.Step(5 * time.Second)
	require.Eventually(t, func() bool {
		return metricValue(t, e.reg, "meshca_crl_incomplete", nil) == 0
	}, 5*time.Second, time.Millisecond, "A's CRL is back")

	// A removed: only B's.
	src.set(root.HeldCRL{CRL: b2, Minting: true})
	p.clk.Step(5 * time.Second)
	require.Eventually(t, func() bool { return e.pub.count() == 3 }, 5*time.Second, time.Millisecond)
	got = splitPEM(t, e.pub.last())
	require.Len(t, got, 3)
	require.Equal(t, b2.Raw, got[2].Raw)
	for _, c := range e.m.CRLs() {
		require.NotEqual(t, scopeA, c.Scope, "A's CRL is no longer served")
	}
	require.False(t, hasMetric(t, e.reg, "meshca_crl_number", map[string]string{"scope": scopeA}), "A's CRL is no longer reported")
}
