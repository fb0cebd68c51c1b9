package rootrotation

import (
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// crlSource is a root.Source that can mint and holds crl (nil: meshca
// signs its root's CRL itself). Only what the rotation's Source asks of
// it is implemented.
type crlSource struct {
	root.Source
	crl *x509.RevocationList
}

func (c *crlSource) Capabilities() root.Capabilities {
	return root.Capabilities{Mint: true, RootCRL: c.crl != nil}
}

func (c *crlSource) CurrentCRL() *x509.RevocationList { return c.crl }

// CurrentCRLs gives the minting root's CRL and, while both roots are in
// force (phases 1 to 4), the other root's; a source whose root CRL meshca
// signs gives none.
func TestSource_CurrentCRLsAreThoseOfTheRootsInForce(t *testing.T) {
	crlA, crlB := &x509.RevocationList{Raw: []byte("A")}, &x509.RevocationList{Raw: []byte("B")}
	vaultA, vaultB, fileB := &crlSource{crl: crlA}, &crlSource{crl: crlB}, &crlSource{}
	type held = []root.HeldCRL
	s, err := NewSource(vaultA)
	require.NoError(t, err)
	require.Equal(t, held{{CRL: crlA, Minting: true}}, s.CurrentCRLs(), "idle")
	for _, c := range []struct {
		phase Phase
		next  root.Source
		want  held
	}{
		{PhasePublish, vaultB, held{{CRL: crlA, Minting: true}, {CRL: crlB}}},
		{PhaseWaitWorkloads, vaultB, held{{CRL: crlA, Minting: true}, {CRL: crlB}}},
		{PhaseSwitch, vaultB, held{{CRL: crlB, Minting: true}, {CRL: crlA}}},
		{PhaseWaitTTL, vaultB, held{{CRL: crlB, Minting: true}, {CRL: crlA}}},
		{PhaseRemove, vaultB, held{{CRL: crlB, Minting: true}}},
		{PhaseDone, vaultB, held{{CRL: crlB, Minting: true}}},
		// Vault A to a file root B: A's CRL stays while A is in force.
		{PhaseWaitWorkloads, fileB, held{{CRL: crlA, Minting: true}}},
		{PhaseWaitTTL, fileB, held{{CRL: crlA}}},
		{PhaseDone, fileB, nil},
	} {
		s, err := NewSource(vaultA)
		require.NoError(t, err)
		s.set(c.phase, nil, nil, c.next)
		require.Equal(t, c.want, s.CurrentCRLs(), "phase %s, B %v", c.phase, c.next == vaultB)
	}
}
