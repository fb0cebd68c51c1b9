package crl_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// mintUnder mints, records and activates a new generation under the root
// rc (key rk), as the switch of a root rotation does, and returns its id.
func (p *mgrPKI) mintUnder(t *testing.T, rc *x509.Certificate, rk crypto.Signer) uint64 {
	t.Helper()
	now := p.clk.Now()
	key := buildP256(t)
	cert, err := root.MintIntermediate(rc, rk, key.Public(), root.IntermediateTemplate{
		CommonName: "Manager Test Intermediate", Organization: "meshca", Lifetime: 365 * 24 * time.Hour,
	}, now)
	require.NoError(t, err)
	ctx := context.Background()
	g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{rc.Raw}, KeyRef: "test", Source: "file-minted", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, p.st.ActivateGeneration(ctx, g.ID, now))
	p.gens[g.ID] = &mgrGen{id: g.ID, cert: cert, key: key}
	p.active = g.ID
	return g.ID
}

// opensslCRLVerify has openssl check crlFile's signature with issuer's key.
func opensslCRLVerify(t *testing.T, dir string, issuer *x509.Certificate, crlFile string) (string, bool) {
	t.Helper()
	ca := writeFile(t, dir, "issuer.pem", root.EncodePEM(issuer))
	out, err := exec.Command(opensslPath(t), "crl", "-inform", "DER", "-noout", "-CAfile", ca, "-in", crlFile).CombinedOutput()
	return string(out), err == nil
}

// A root rotation from A to B in its wait-out-ttl phase: generations 1
// and 2 under A, 3 and 4 under B (4 active), both roots in force with
// their keys held. Each root signs its own CRL, listing only the
// revocations of the intermediates it issued (RFC 5280 section 5); the
// minting root B is ScopeRoot, A is RootScope(A, false); ca-crl.pem
// holds both, and openssl accepts the leaves of the unrevoked
// intermediates of either root and refuses those of the revoked one of
// each. A's CRL numbers go on increasing when its scope changes at the
// switch and across a restart (RFC 5280 section 5.2.3).
func TestManager_TwoRootsEachCRLListsTheIntermediatesItIssued(t *testing.T) {
	p := newMgrPKI(t) // root A, generations 1 (retired) and 2 (active)
	rootA, keyA := p.root, p.rootKey
	gen1, gen2 := p.retired(), p.active
	e := newManager(t, p)
	e.run(t)
	ctx := context.Background()
	numA, _ := e.crl(t, crl.ScopeRoot, false)

	keyB := buildP256(t)
	rootB, err := root.NewSelfSignedRoot(keyB, "Manager Test Root B", "meshca", 10*365*24*time.Hour, p.clk.Now())
	require.NoError(t, err)
	gen3 := p.mintUnder(t, rootB, keyB)
	gen4 := p.mintUnder(t, rootB, keyB)
	scopeA := crl.RootScope(rootA, false)
	require.Regexp(t, `^root-[0-9a-f]{16}$`, scopeA)
	issuers := func() []crl.Issuer {
		is := []crl.Issuer{p.genIssuer(gen4), p.genIssuer(gen3), p.genIssuer(gen2), p.genIssuer(gen1)}
		return append(is, crl.RootIssuers([]root.HeldRoot{
			{Cert: rootB, Key: root.CAKey{Signer: keyB}, Minting: true},
			{Cert: rootA, Key: root.CAKey{Signer: keyA}},
		})...)
	}
	chain := []*x509.Certificate{p.gens[gen4].cert, rootB}
	p.clk.Step(time.Second)
	require.NoError(t, e.m.SetIssuers(ctx, issuers(), chain))

	pa, la := e.crl(t, scopeA, false)
	pb, lb := e.crl(t, crl.ScopeRoot, false)
	require.NoError(t, la.CheckSignatureFrom(rootA))
	require.NoError(t, lb.CheckSignatureFrom(rootB))
	require.Greater(t, pa.Number, numA.Number, "A's CRL number goes on from its last one as ScopeRoot")
	require.NotEqual(t, pa.Number, pb.Number)
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_incomplete", nil))
	got := splitPEM(t, e.m.CACRLPEM())
	require.Len(t, got, 6, "the four generations' CRLs, B's and A's")
	require.NoError(t, got[4].CheckSignatureFrom(rootB))
	require.NoError(t, got[5].CheckSignatureFrom(rootA))

	// Revoking an intermediate of each root: each goes on its root's CRL alone.
	e.revokeAndWait(t, crl.Request{Generation: gen2, Reason: store.ReasonSuperseded})
	e.revokeAndWait(t, crl.Request{Generation: gen3, Reason: store.ReasonSuperseded})
	pa, la = e.crl(t, scopeA, false)
	pb, lb = e.crl(t, crl.ScopeRoot, false)
	require.Equal(t, []string{serialHex(p.gens[gen2].cert)}, serialsOf(la), "A's CRL lists A's revoked intermediate only")
	require.Equal(t, []string{serialHex(p.gens[gen3].cert)}, serialsOf(lb), "B's CRL lists B's revoked intermediate only")
	_, da := e.crl(t, scopeA, true)
	_, db := e.crl(t, crl.ScopeRoot, true)
	require.Equal(t, []string{serialHex(p.gens[gen2].cert)}, serialsOf(da), "A's delta")
	require.Equal(t, []string{serialHex(p.gens[gen3].cert)}, serialsOf(db), "B's delta")
	require.Equal(t, []string{"http://meshca.test:15014/crl/" + scopeA + "-delta.crl"}, freshestOf(t, pa.DER))
	require.Equal(t, []string{"http://meshca.test:15014/crl/root-delta.crl"}, freshestOf(t, pb.DER))
	h := e.m.Handler()
	for _, path := range []string{"/crl/" + scopeA + ".crl", "/crl/" + scopeA + "-delta.crl", "/crl/root.crl", "/crl/root-delta.crl"} {
		require.Equal(t, 200, httpStatus(t, h, path), path)
	}

	// openssl checks each root's CRL against that root, and the chains
	// under either root with ca-crl.pem as published.
	dir := t.TempDir()
	fa, fb := writeFile(t, dir, "a.crl", pa.DER), writeFile(t, dir, "b.crl", pb.DER)
	out, ok := opensslCRLVerify(t, dir, rootA, fa)
	require.True(t, ok, "A's CRL against A: %s", out)
	out, ok = opensslCRLVerify(t, dir, rootB, fb)
	require.True(t, ok, "B's CRL against B: %s", out)
	out, ok = opensslCRLVerify(t, dir, rootB, fa)
	require.False(t, ok, "A's CRL against B: %s", out)
	caCRL := writeFile(t, dir, "ca-crl.pem", e.m.CACRLPEM())
	for _, c := range []struct {
		gen     uint64
		rc      *x509.Certificate
		revoked bool
	}{{gen1, rootA, false}, {gen2, rootA, true}, {gen3, rootB, true}, {gen4, rootB, false}} {
		leaf, _ := p.issue(t, c.gen, appID, p.clk.Now().Add(time.Hour))
		out, ok := opensslVerify(t, e, dir, c.rc, p.gens[c.gen].cert, leaf, caCRL, "-crl_check_all")
		if c.revoked {
			require.False(t, ok, "a leaf of revoked generation %d: %s", c.gen, out)
			require.Contains(t, out, "certificate revoked", "generation %d", c.gen)
		} else {
			require.True(t, ok, "a leaf of generation %d: %s", c.gen, out)
		}
	}

	// A restart: the same issuers, higher numbers for both roots.
	e.m = nil
	p.reopen(t)
	p.clk.Step(time.Second)
	e2 := newManager(t, p, func(o *crl.Options) { o.Issuers, o.Chain = issuers(), chain })
	pa2, la2 := e2.crl(t, scopeA, false)
	pb2, lb2 := e2.crl(t, crl.ScopeRoot, false)
	require.Greater(t, pa2.Number, max(pa.Number, pb.Number))
	require.Greater(t, pb2.Number, max(pa.Number, pb.Number))
	require.Equal(t, []string{serialHex(p.gens[gen2].cert)}, serialsOf(la2))
	require.Equal(t, []string{serialHex(p.gens[gen3].cert)}, serialsOf(lb2))

	// Phase 5: A leaves; its scope is no longer served.
	p.clk.Step(time.Second)
	require.NoError(t, e2.m.SetIssuers(ctx, append(issuers()[:4], issuers()[4]), chain))
	require.Equal(t, 404, httpStatus(t, e2.m.Handler(), "/crl/"+scopeA+".crl"))
	require.Len(t, splitPEM(t, e2.m.CACRLPEM()), 5)
}

// freshestOf is the FreshestCRL (RFC 5280 section 5.2.6) URIs of a CRL.
func freshestOf(t *testing.T, der []byte) []string {
	t.Helper()
	out, err := exec.Command(opensslPath(t), "crl", "-inform", "DER", "-noout", "-text", "-in", writeFile(t, t.TempDir(), "c.crl", der)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var uris []string
	for _, f := range regexpURI.FindAllStringSubmatch(string(out), -1) {
		uris = append(uris, f[1])
	}
	return uris
}

var regexpURI = regexp.MustCompile(`URI:(\S+)`)
