package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// Without serve, 'meshca revoke' warns from the configuration alone about
// an intermediate revoked under a root meshca holds no key of (Vault, or
// root.file.cacertsDir): no CRL meshca signs will list it.
func TestOfflineRevocationNotices(t *testing.T) {
	inter := store.Revocation{Serial: "1f", Kind: store.KindIntermediate, Generation: 2}
	leaf := store.Revocation{Serial: "2e", Kind: store.KindLeaf, Generation: 3, Known: true}
	recs := []store.Revocation{inter, leaf}

	own := config.Defaults(t.TempDir())
	require.Equal(t, config.RootSourceFile, own.Root.Source)
	require.True(t, own.Root.File.Minted())
	require.Empty(t, offlineRevocationNotices(own, recs), "meshca signs its own root's CRL")

	vault := config.Defaults(t.TempDir())
	vault.Root.Source = config.RootSourceVault
	plugIn := config.Defaults(t.TempDir())
	plugIn.Root.File = config.FileRootConfig{CACertsDir: t.TempDir()}
	for name, cfg := range map[string]*config.Config{"vault": vault, "cacertsDir": plugIn} {
		require.Equal(t, []string{crl.UnlistedNotice(inter, time.Now())}, offlineRevocationNotices(cfg, recs), name)
	}
}
