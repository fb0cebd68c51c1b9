package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
)

// generations lists the CA generations of the store in dir.
func generations(t *testing.T, dir string) []store.Generation {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "meshca.db"))
	require.NoError(t, err)
	defer st.Close()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	return gens
}

// keyFiles lists the key store of dir.
func keyFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "keys"))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestOfflineCommands_NeverMintOrActivateAGeneration: meshca sign and
// meshca cacerts open the CA read-only. With an active generation past its
// rotation threshold, or with no generation at all, they fail saying to
// run meshca serve, and leave the generations and the key store exactly
// as they were: no intermediate is minted, recorded or activated.
func TestOfflineCommands_NeverMintOrActivateAGeneration(t *testing.T) {
	id := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/app"}
	csr := writeWorkloadCSR(t, t.TempDir(), id)
	offline := map[string][]string{
		"sign":    {"sign", "--csr", csr, "--identity", id.String()},
		"cacerts": {"cacerts", "--out", filepath.Join(t.TempDir(), "out")},
	}

	t.Run("active generation past its rotation threshold", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
		require.NoError(t, err)
		// Any intermediate is past a threshold this small (its notBefore is
		// backdated by minutes).
		cfgPath := filepath.Join(dir, dirConfigFile)
		b, err := os.ReadFile(cfgPath)
		require.NoError(t, err)
		patched := strings.Replace(string(b), "intermediate:\n", "intermediate:\n  rotationThreshold: 0.000001\n", 1)
		require.NotEqual(t, string(b), patched)
		require.NoError(t, os.WriteFile(cfgPath, []byte(patched), 0o644))
		before, keysBefore := generations(t, dir), keyFiles(t, dir)
		require.Len(t, before, 1)
		require.True(t, before[0].Active())

		for name, args := range offline {
			t.Run(name, func(t *testing.T) {
				out, err := runMeshca(t, append(args, "--dir", dir)...)
				require.ErrorContains(t, err, "no usable active CA generation: active intermediate passed its activation threshold (generation 1, renewal_due ")
				require.ErrorContains(t, err, "run 'meshca serve' on this configuration, which mints and activates one")
				require.NotContains(t, out, "BEGIN CERTIFICATE")
				require.Equal(t, before, generations(t, dir), "no generation is added or activated")
				require.Equal(t, keysBefore, keyFiles(t, dir), "no key is created")
			})
		}
	})

	t.Run("no generation", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
		require.NoError(t, err)
		// A store that holds no generation (a missing store is another
		// error: TestCommandsThatNeedACA_RefuseADirectoryWithoutOne).
		require.NoError(t, os.Remove(filepath.Join(dir, "meshca.db")))
		require.NoError(t, os.Remove(filepath.Join(dir, "meshca.db.journal")))
		st, err := boltstore.Open(filepath.Join(dir, "meshca.db"))
		require.NoError(t, err)
		require.NoError(t, st.Close())
		keysBefore := keyFiles(t, dir)

		for name, args := range offline {
			t.Run(name, func(t *testing.T) {
				_, err := runMeshca(t, append(args, "--dir", dir)...)
				require.ErrorContains(t, err, `no usable active CA generation: the store holds no active CA generation from root source "file-minted"; this command opens the CA read-only`)
				require.Empty(t, generations(t, dir), "no generation is added")
				require.Equal(t, keysBefore, keyFiles(t, dir), "no key is created")
			})
		}
	})
}
