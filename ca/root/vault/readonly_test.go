package vault_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/root/vault"
	"github.com/meshca/meshca/ca/store"
)

// TestOpenReadOnly_VaultSignsWithTheActiveGenerationAndNeverMints: the
// offline commands' open reuses the active Vault-signed generation, also
// while Vault is sealed, and fails, saying to run meshca serve, instead of
// asking Vault for a successor when that generation is past its rotation
// threshold. The generations never change.
func TestOpenReadOnly_VaultSignsWithTheActiveGenerationAndNeverMints(t *testing.T) {
	vcfg, vaultRoot := vault.NewTestPKI(t, "readonly")
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := vaultCAConfig(t, vcfg, dir)
	rt, err := openCA(context.Background(), cfg, quiet, prometheus.NewRegistry())
	require.NoError(t, err)
	before, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, before, 1)
	require.NoError(t, rt.Close())
	gens := func() []store.Generation {
		t.Helper()
		rt, err := authority.OpenReadOnly(context.Background(), vaultCAConfig(t, vcfg, dir), quiet)
		require.NoError(t, err)
		defer rt.Close()
		g, err := rt.Store.ListGenerations(context.Background())
		require.NoError(t, err)
		return g
	}

	rt, err = authority.OpenReadOnly(context.Background(), cfg, quiet)
	require.NoError(t, err)
	require.Equal(t, before[0].ID, rt.Authority.Material().Generation)
	signAndVerify(t, rt, vaultRoot)
	require.NoError(t, rt.Close())

	due := vaultCAConfig(t, vcfg, dir)
	// Vault backdates notBefore by 30s.
	due.Intermediate.PrepareThreshold, due.Intermediate.ActivateThreshold, due.Intermediate.RotationThreshold = 0.5e-10, 1e-10, 1e-10
	_, err = authority.OpenReadOnly(context.Background(), due, quiet)
	require.ErrorIs(t, err, authority.ErrNoActiveGeneration)
	require.ErrorContains(t, err, "active intermediate passed its activation threshold (generation 1, renewal_due ")
	require.ErrorContains(t, err, "run 'meshca serve' on this configuration")
	require.Len(t, gens(), 1, "Vault signed no successor")

	unseal := vault.SealTestVault(t)
	rt, err = authority.OpenReadOnly(context.Background(), cfg, quiet)
	require.NoError(t, err, "the stored generation signs while Vault is sealed")
	require.Equal(t, before[0].ID, rt.Authority.Material().Generation)
	signAndVerify(t, rt, vaultRoot)
	require.NoError(t, rt.Close())
	_, err = authority.OpenReadOnly(context.Background(), due, quiet)
	require.ErrorIs(t, err, authority.ErrNoActiveGeneration)
	require.ErrorContains(t, err, "the root source is unavailable (")
	require.ErrorContains(t, err, "and the stored intermediate passed its activation threshold (generation 1, renewal_due ")
	unseal()
	require.Len(t, gens(), 1)
}
