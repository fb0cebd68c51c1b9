package rootrotation

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// crlSource is a root.Source that can mint and supplies its root's CRL
// (Vault) or not (a file root: meshca signs its CRL). Only what the
// rotation's Source asks of it is implemented.
type crlSource struct {
	root.Source
	supplies bool
	crl      *x509.RevocationList
}

func (c *crlSource) Capabilities() root.Capabilities {
	return root.Capabilities{Mint: true, RootCRL: c.supplies}
}

func (c *crlSource) CurrentCRL() *x509.RevocationList { return c.crl }

// CurrentCRLs gives the minting root's CRL and, while both roots are in
// force (phases 1 to 4), the other root's, each named by its root; a
// source that holds none yet gives an entry without a CRL; sources whose
// root CRL meshca signs give none.
func TestSource_CurrentCRLsAreThoseOfTheRootsInForce(t *testing.T) {
	rootA, rootB := &x509.Certificate{Raw: []byte("root A")}, &x509.Certificate{Raw: []byte("root B")}
	crlA, crlB := &x509.RevocationList{Raw: []byte("A")}, &x509.RevocationList{Raw: []byte("B")}
	vaultA, vaultB := &crlSource{supplies: true, crl: crlA}, &crlSource{supplies: true, crl: crlB}
	type held = []root.HeldCRL
	s, err := NewSource(vaultA)
	require.NoError(t, err)
	require.Equal(t, held{{CRL: crlA, Minting: true}}, s.CurrentCRLs(), "idle")
	for _, c := range []struct {
		phase    Phase
		old, new root.Source
		want     held
	}{
		{PhasePublish, vaultA, vaultB, held{{CRL: crlA, Minting: true, Root: rootA}, {CRL: crlB, Root: rootB}}},
		{PhaseWaitWorkloads, vaultA, vaultB, held{{CRL: crlA, Minting: true, Root: rootA}, {CRL: crlB, Root: rootB}}},
		{PhaseSwitch, vaultA, vaultB, held{{CRL: crlB, Minting: true, Root: rootB}, {CRL: crlA, Root: rootA}}},
		{PhaseWaitTTL, vaultA, vaultB, held{{CRL: crlB, Minting: true, Root: rootB}, {CRL: crlA, Root: rootA}}},
		{PhaseRemove, vaultA, vaultB, held{{CRL: crlB, Minting: true, Root: rootB}}},
		{PhaseDone, vaultA, vaultB, held{{CRL: crlB, Minting: true, Root: rootB}}},
		// A's Vault not reached since a restart: its entry holds no CRL.
		{PhaseWaitTTL, &crlSource{supplies: true}, vaultB, held{{CRL: crlB, Minting: true, Root: rootB}, {Root: rootA}}},
		// File roots: meshca signs both CRLs.
		{PhaseWaitTTL, &crlSource{}, &crlSource{}, nil},
	} {
		s, err := NewSource(c.old)
		require.NoError(t, err)
		s.set(c.phase, []*x509.Certificate{rootA}, rootB, c.new)
		require.Equal(t, c.want, s.CurrentCRLs(), "phase %s", c.phase)
	}
}

// healthSource is a crlSource whose health the test sets.
type healthSource struct {
	crlSource
	err error
}

func (h *healthSource) Health() error { return h.err }

// OtherHealth is the health of the other root's source while both roots
// are in force and it supplies its root's CRL; nil otherwise.
func TestSource_OtherHealthIsTheOtherRootsSourceWhileItsCRLIsPublished(t *testing.T) {
	downA, downB := errors.New("A is down"), errors.New("B is down")
	vaultA := &healthSource{crlSource{supplies: true}, downA}
	vaultB := &healthSource{crlSource{supplies: true}, downB}
	fileB := &healthSource{crlSource{}, downB}
	s, err := NewSource(vaultA)
	require.NoError(t, err)
	require.NoError(t, s.OtherHealth(), "idle: the minting source is Health's")
	for _, c := range []struct {
		phase Phase
		next  root.Source
		want  error
	}{
		{PhasePublish, vaultB, downB},
		{PhaseWaitWorkloads, vaultB, downB},
		{PhaseSwitch, vaultB, downA},
		{PhaseWaitTTL, vaultB, downA},
		{PhaseRemove, vaultB, nil},
		{PhaseDone, vaultB, nil},
		{PhaseWaitWorkloads, fileB, nil}, // meshca signs B's CRL
	} {
		s, err := NewSource(vaultA)
		require.NoError(t, err)
		s.set(c.phase, nil, nil, c.next)
		require.Equal(t, c.want, s.OtherHealth(), "phase %s", c.phase)
	}
}
