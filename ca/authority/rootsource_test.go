package authority_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store/storeopen"
)

// TestLoader_PreIssuedIntermediateCannotMintAndSaysSo: under a pre-issued
// intermediate (root.file.cacertsDir) the Loader asks the root source to
// mint and gets root.ErrCannotMint, the error rotation alerts on, before
// any key is created or generation recorded. Read-only, the pre-issued
// intermediate is used only once serve or init has recorded it.
func TestLoader_PreIssuedIntermediateCannotMintAndSaysSo(t *testing.T) {
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	dir := writeCACertsDir(t, root.CAKey{Signer: rk}, root.CAKey{Signer: ik}, func(p string) error { return keys.WriteKeyFile(p, ik) })
	cfg := cacertsConfig(t, profile.Classical, dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	_, err = authority.OpenReadOnly(context.Background(), cfg, quiet)
	require.ErrorIs(t, err, storeopen.ErrNoStore, "read-only creates no store")
	st, err := storeopen.Open(context.Background(), cfg.Store, quiet)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	_, err = authority.OpenReadOnly(context.Background(), cfg, quiet)
	require.ErrorIs(t, err, authority.ErrNoActiveGeneration)
	require.ErrorContains(t, err, `the pre-issued intermediate "CN=pre-issued,O=corp" in root.file.cacertsDir is not the active CA generation for intermediate.profile classical`)

	rt, mgr, err := openCAManager(context.Background(), cfg, quiet, nil)
	require.NoError(t, err)
	require.Equal(t, root.Capabilities{}, rt.Root.Capabilities())
	gens, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.Equal(t, root.KindFileCACerts, gens[0].Source)
	keysBefore, err := os.ReadDir(cfg.KeyStore.Dir)
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}

	m, err := mgr.RotateNow(context.Background(), "test")
	require.Nil(t, m)
	require.ErrorIs(t, err, root.ErrCannotMint)
	require.NotErrorIs(t, err, root.ErrUnavailable)
	require.ErrorContains(t, err, "cannot mint an intermediate: pre-issued intermediate (root.file.cacertsDir "+dir+")")
	after, err := rt.Store.ListGenerations(context.Background())
	require.NoError(t, err)
	require.Equal(t, gens, after, "nothing is recorded")
	keysAfter, err := os.ReadDir(cfg.KeyStore.Dir)
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	require.Equal(t, len(keysBefore), len(keysAfter), "no key is created")

	require.NoError(t, rt.Close())

	ro, err := authority.OpenReadOnly(context.Background(), cfg, quiet)
	require.NoError(t, err, "recorded by Open, the pre-issued intermediate signs read-only")
	require.Equal(t, gens[0].ID, ro.Authority.Material().Generation)
	require.NoError(t, ro.Close())
}
