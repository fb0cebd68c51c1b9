package crl_test

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// A signer with its own intermediate keeps an active generation of its
// own lineage beside the default's: revoking it, by number or by its
// serial, is refused like the default's; an unknown serial still goes on
// the default signer's active CRL, not on the newer named one.
func TestRevoker_ActiveGenerationOfEveryLineageIsRefused(t *testing.T) {
	p := newMgrPKI(t)
	ctx := context.Background()
	now := p.clk.Now()
	cert, err := root.MintIntermediate(p.root, p.rootKey, buildP256(t).Public(), root.IntermediateTemplate{
		CommonName: "Manager Test Intermediate signer alpha", Organization: "meshca", Lifetime: 365 * 24 * time.Hour,
	}, now)
	require.NoError(t, err)
	g, err := p.st.AddGeneration(ctx, store.Generation{CertDER: cert.Raw, ChainDER: [][]byte{p.root.Raw}, KeyRef: "test-alpha", Source: "file-minted", Signer: "alpha", CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, p.st.ActivateGeneration(ctx, g.ID, now))
	r := crl.NewRevoker(p.st, p.clk)

	_, err = r.Revoke(ctx, crl.Request{Generation: g.ID})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	_, err = r.Revoke(ctx, crl.Request{Serial: hex.EncodeToString(cert.SerialNumber.Bytes())})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	_, err = r.Revoke(ctx, crl.Request{Generation: p.active})
	require.ErrorIs(t, err, crl.ErrActiveGeneration, "the default's active generation is still refused")
	require.Zero(t, lastSeq(t, p.st), "nothing is stored")

	recs, err := r.Revoke(ctx, crl.Request{Serial: "00DEADBEEF"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, p.active, recs[0].Generation, "an unknown serial goes on the default signer's CRL")
}
