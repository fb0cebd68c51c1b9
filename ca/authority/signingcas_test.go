package authority_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/profile"
)

// The CAs whose CRLs meshca signs are the active generation, the retired generations whose
// leaves may still be in use, and the root whose key meshca holds; each
// signs with its own key.
func TestSigningCAs_GenerationsAndTheRoot(t *testing.T) {
	ca := newTestCA(t)
	ctx := context.Background()
	first := ca.rt.Authority.Material()
	is, err := ca.rt.SigningCAs(ctx, time.Now())
	require.NoError(t, err)
	require.Len(t, is, 2)
	require.Equal(t, first.Generation, is[0].Generation)
	require.False(t, is[0].Root)
	require.True(t, is[0].Cert.Equal(first.Bundle.Cert))
	require.True(t, is[1].Root)
	require.Zero(t, is[1].Generation)
	require.True(t, is[1].Cert.Equal(first.Bundle.Roots[0]))
	require.Equal(t, first.Bundle.Roots[0].PublicKey, is[1].Key.Public())
	require.Equal(t, []string{first.Bundle.Cert.Subject.String(), first.Bundle.Roots[0].Subject.String()},
		[]string{ca.rt.CertChain()[0].Subject.String(), ca.rt.CertChain()[1].Subject.String()})

	// A new profile mints generation 2; generation 1 is retired but its
	// leaves live on, so it keeps its CRL.
	require.NoError(t, ca.rt.Close())
	ca.cfg.Intermediate.Profile = profile.Classical
	ca.cfg.Intermediate.PQAlgorithm = ""
	ca.cfg.Issuance.Profile = profile.Classical
	rt, err := openServeCA(ctx, ca.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	second := rt.Authority.Material()
	require.NotEqual(t, first.Generation, second.Generation)
	is, err = rt.SigningCAs(ctx, time.Now())
	require.NoError(t, err)
	var order []uint64
	for _, i := range is {
		order = append(order, i.Generation)
	}
	require.Equal(t, []uint64{second.Generation, first.Generation, 0}, order)
	require.True(t, is[2].Root)
	require.True(t, is[1].Cert.Equal(first.Bundle.Cert))
	require.Equal(t, first.Bundle.Cert.PublicKey, is[1].Key.Public())
	require.NotNil(t, is[1].Alt, "the catalyst generation keeps its ML-DSA key for the CRL's alternative signature")

	// Once its leaves can no longer be in use (issuance.maxCertTTL after
	// retirement), it has no CRL any more.
	is, err = rt.SigningCAs(ctx, time.Now().Add(ca.cfg.Issuance.MaxCertTTL.Duration+time.Minute))
	require.NoError(t, err)
	require.Len(t, is, 2)
}
