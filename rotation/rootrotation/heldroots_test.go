package rootrotation

import (
	"context"
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// heldRoots are the roots, minting first, whose key the source given to
// the intermediate manager (and to serve's CRL fan-out) offers.
func (h *harness) heldRoots() (roots []*x509.Certificate, minting []bool) {
	h.t.Helper()
	held, err := root.HeldRoots(h.src.RootSource())
	require.NoError(h.t, err)
	for _, r := range held {
		roots = append(roots, r.Cert)
		minting = append(minting, r.Minting)
		// The key is the root's: it signs what the root's certificate
		// verifies.
		require.True(h.t, r.Key.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(r.Cert.PublicKey), "the key of %s", r.Cert.Subject)
	}
	return roots, minting
}

// Every root in force whose key meshca holds is offered as a CRL issuer,
// the minting one first: from phase 1 to phase 4 both A and B (each
// signs the CRL of the intermediates it issued, RFC 5280 section 5), B
// alone once A is removed; across a restart too. (The reviewer's repro,
// TestReview_NoRootCRLIssuerForAInPhase4, found only B in phase 4.)
func TestSource_SigningRootsAreEveryRootInForce(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a, b := h.a.cert, h.b.cert
	h.issue("01", 24*time.Hour) // a leaf under A's intermediate, in use

	roots, minting := h.heldRoots()
	require.Equal(t, []*x509.Certificate{a}, roots, "idle: A")
	require.Equal(t, []bool{true}, minting)

	h.start()
	roots, minting = h.heldRoots()
	require.Equal(t, []*x509.Certificate{a, b}, roots, "phase 1: A mints, B is published")
	require.Equal(t, []bool{true, false}, minting)
	h.step()
	h.requirePhase(PhaseWaitWorkloads)
	roots, _ = h.heldRoots()
	require.Equal(t, []*x509.Certificate{a, b}, roots, "phase 2")

	_, err := h.c.Advance(ctx, "op")
	require.NoError(t, err)
	roots, minting = h.heldRoots()
	require.Equal(t, []*x509.Certificate{b, a}, roots, "phase 3: B mints, A is still in force")
	require.Equal(t, []bool{true, false}, minting)
	h.step()
	h.requirePhase(PhaseWaitTTL)
	roots, minting = h.heldRoots()
	require.Equal(t, []*x509.Certificate{b, a}, roots, "phase 4")
	require.Equal(t, []bool{true, false}, minting)
	// The legacy single-root view names the minting root.
	signing, _, err := h.src.RootSource().(root.RootKeyHolder).SigningRoot()
	require.NoError(t, err)
	require.True(t, signing.Equal(b))

	h.restart()
	h.requirePhase(PhaseWaitTTL)
	roots, minting = h.heldRoots()
	require.Equal(t, []*x509.Certificate{b, a}, roots, "phase 4 after a restart")
	require.Equal(t, []bool{true, false}, minting)

	h.clk.Step(25 * time.Hour) // 01 expired
	h.step()
	h.requirePhase(PhaseDone)
	roots, minting = h.heldRoots()
	require.Equal(t, []*x509.Certificate{b}, roots, "done: B alone")
	require.Equal(t, []bool{true}, minting)
}
