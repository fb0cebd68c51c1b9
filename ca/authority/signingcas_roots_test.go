package authority_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
)

// heldRoots is a root source that holds the keys of two roots in force
// (a root rotation's composite source, rotation/rootrotation).
type heldRoots struct {
	root.Source
	held []root.HeldRoot
}

func (h heldRoots) SigningRoots() ([]root.HeldRoot, error) { return h.held, nil }

// During a root rotation every root in force whose key meshca holds signs
// a CRL from start-up on, the minting one first, each with its own key.
func TestSigningCAs_EveryRootInForceWithItsKey(t *testing.T) {
	ca := newTestCA(t)
	ctx := context.Background()
	rc, rk, err := ca.rt.Root.(root.RootKeyHolder).SigningRoot()
	require.NoError(t, err)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	other, err := root.NewSelfSignedRoot(k, "root B", "meshca", 365*24*time.Hour, time.Now())
	require.NoError(t, err)
	ca.rt.Root = heldRoots{Source: ca.rt.Root, held: []root.HeldRoot{
		{Cert: other, Key: root.CAKey{Signer: k}, Minting: true}, {Cert: rc, Key: rk},
	}}
	is, err := ca.rt.SigningCAs(ctx, time.Now())
	require.NoError(t, err)
	require.Len(t, is, 3)
	require.False(t, is[0].Root)
	require.True(t, is[1].Root)
	require.True(t, is[1].Minting)
	require.True(t, is[1].Cert.Equal(other))
	require.Equal(t, k.Public(), is[1].Key.Public())
	require.True(t, is[2].Root)
	require.False(t, is[2].Minting)
	require.True(t, is[2].Cert.Equal(rc))
	require.Equal(t, rc.PublicKey, is[2].Key.Public())
	require.Equal(t, rk.Alt, is[2].Alt, "a Catalyst root keeps its ML-DSA key for the CRL's alternative signature")
}
