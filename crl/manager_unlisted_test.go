package crl_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/test/logbuf"
)

const unlistedLog = "revocation recorded that no CRL meshca publishes lists"

// Under a root whose key meshca holds, a revoked generation goes on the
// root's CRL and a revoked leaf on its generation's: nothing is unlisted.
func TestManager_UnderItsOwnRootEveryRevocationIsListed(t *testing.T) {
	p := newMgrPKI(t)
	var logs logbuf.Buffer
	e := newManager(t, p, func(o *crl.Options) { o.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	_, leaf := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	for _, req := range []crl.Request{
		{Generation: p.retired(), Reason: store.ReasonCACompromise},
		{Serial: leaf.Serial, Reason: store.ReasonKeyCompromise},
	} {
		recs, err := e.m.Revoke(context.Background(), req)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Empty(t, e.m.Unlisted(context.Background(), recs))
	}
	require.NotContains(t, logs.String(), unlistedLog)
}

// Under a root meshca holds no key of (Vault, root.file.cacertsDir), a
// revoked generation is recorded and acknowledged, but no CRL meshca
// signs lists it: that is said, in the log and by Unlisted (which the
// admin API answers with), with what to do. So is a leaf of a generation
// whose CRL meshca no longer serves.
func TestManager_ARevocationNoCRLListsIsSaid(t *testing.T) {
	p := newMgrPKI(t)
	var logs logbuf.Buffer
	_, oldLeaf := p.issue(t, p.retired(), appID, p.clk.Now().Add(time.Hour))
	_, leaf := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	e := newManager(t, p, func(o *crl.Options) {
		o.Issuers = []crl.Issuer{p.genIssuer(p.active)} // no root key; the retired generation's CRL no longer served
		o.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	})

	recs, err := e.m.Revoke(context.Background(), crl.Request{Serial: leaf.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	require.Empty(t, e.m.Unlisted(context.Background(), recs), "the active generation's CRL lists its leaf")
	require.NotContains(t, logs.String(), unlistedLog)

	recs, err = e.m.Revoke(context.Background(), crl.Request{Generation: p.retired(), Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, store.KindIntermediate, recs[0].Kind)
	require.Equal(t, recs, e.m.Unlisted(context.Background(), recs))
	n := crl.UnlistedNotice(recs[0], p.clk.Now())
	require.Contains(t, n, "generation "+strconv.FormatUint(p.retired(), 10)+"'s intermediate (serial "+recs[0].Serial+")")
	require.Contains(t, n, "Revoke it at the root that did")
	require.Equal(t, 1, strings.Count(logs.String(), unlistedLog))
	require.Contains(t, logs.String(), `"serial":"`+recs[0].Serial+`"`)

	recs, err = e.m.Revoke(context.Background(), crl.Request{Serial: oldLeaf.Serial, Reason: store.ReasonKeyCompromise})
	require.NoError(t, err)
	require.Equal(t, recs, e.m.Unlisted(context.Background(), recs))
	require.Contains(t, crl.UnlistedNotice(recs[0], p.clk.Now()), "meshca no longer serves its generation "+strconv.FormatUint(p.retired(), 10)+"'s CRL, so relying parties")
	require.Contains(t, crl.UnlistedNotice(recs[0], oldLeaf.NotAfter), "and it has expired")
	require.Equal(t, 2, strings.Count(logs.String(), unlistedLog))
}

// During a root rotation between a root meshca holds no key of (Vault)
// and one it does, an intermediate goes only on the CRL of the root that
// issued it (RFC 5280 section 5): one the held root did not issue is
// unlisted although meshca signs a root's CRL.
func TestManager_AnIntermediateIsListedOnlyByTheRootThatIssuedIt(t *testing.T) {
	p := newMgrPKI(t) // its root stands for Vault's: meshca holds no key of it below
	underA := p.active
	keyB := buildP256(t)
	rootB, err := root.NewSelfSignedRoot(keyB, "Manager Test Root B", "meshca", 10*365*24*time.Hour, p.clk.Now())
	require.NoError(t, err)
	firstB := p.mintUnder(t, rootB, keyB)
	p.mintUnder(t, rootB, keyB)
	e := newManager(t, p, func(o *crl.Options) {
		o.Issuers = []crl.Issuer{p.genIssuer(p.active), {Scope: crl.ScopeRoot, Cert: rootB, Signer: crl.Signer{Key: keyB}}}
		o.Chain = []*x509.Certificate{p.gens[p.active].cert, rootB}
	})
	ctx := context.Background()
	recs, err := e.m.Revoke(ctx, crl.Request{Generation: firstB, Reason: store.ReasonSuperseded})
	require.NoError(t, err)
	require.Empty(t, e.m.Unlisted(ctx, recs), "root B's CRL lists what B issued")
	recs, err = e.m.Revoke(ctx, crl.Request{Generation: underA, Reason: store.ReasonSuperseded})
	require.NoError(t, err)
	require.Equal(t, recs, e.m.Unlisted(ctx, recs))
	require.Equal(t, []string{crl.UnlistedNotice(recs[0], p.clk.Now())}, e.m.UnlistedNotices(ctx, recs))
}
