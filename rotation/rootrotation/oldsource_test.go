package rootrotation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// flakySource fails Roots while down: a Vault B that is briefly
// unreachable when meshca starts.
type flakySource struct {
	root.Source
	down atomic.Bool
}

func (f *flakySource) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	if f.down.Load() {
		return nil, root.ErrUnavailable
	}
	return f.Source.Roots(ctx)
}

// The configuration already names B in phase 2 and B cannot answer when
// meshca starts: A still comes from the journal, so that once B answers
// phase 2 mints under A, not B.
func TestOpen_ConfigNamingTheNewRootWhileItIsDownStillMintsUnderTheOldRoot(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.issue("01", 24*time.Hour)
	h.start()
	h.step()
	h.requirePhase(PhaseWaitWorkloads)

	bsrc, err := h.newSource(ctx, h.b.spec)
	require.NoError(t, err)
	configured := &flakySource{Source: bsrc}
	configured.down.Store(true)
	old, err := oldSource(ctx, h.st, h.b.spec, configured, h.newSource, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	configured.down.Store(false)
	src, err := NewSource(old)
	require.NoError(t, err)
	oldRoots, newRoot, err := parseRoots(h.journal())
	require.NoError(t, err)
	src.set(PhaseWaitWorkloads, oldRoots, newRoot, bsrc)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	req, err := root.NewIntermediateRequest(root.CAKey{Signer: k}, root.IntermediateTemplate{CommonName: "x", Organization: "o", Lifetime: 24 * time.Hour}, h.clk.Now())
	require.NoError(t, err)
	b, err := src.MintIntermediate(ctx, req)
	require.NoError(t, err)
	require.Equal(t, h.a.cert.RawSubject, b.Cert.RawIssuer, "phase 2 mints under A")
	require.NoError(t, b.Cert.CheckSignatureFrom(h.a.cert))

	// A configuration that still names A keeps the configured source.
	same, err := oldSource(ctx, h.st, h.a.spec, configured, h.newSource, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Same(t, configured, same)
}
