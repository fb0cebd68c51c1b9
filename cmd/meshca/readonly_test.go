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

// TestCommandsThatNeedACA_RefuseADirectoryWithoutOne: a mistyped --dir (or
// the wrong working directory) is "no CA here", with what to do, and
// leaves the file system as it was. Before, every one of these created an
// empty store there (meshca.db and its journal), status called it healthy
// and records printed nothing, and 'meshca init' then refused the
// directory as already holding a CA.
func TestCommandsThatNeedACA_RefuseADirectoryWithoutOne(t *testing.T) {
	id := &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/app"}
	csr := writeWorkloadCSR(t, t.TempDir(), id)
	commands := map[string][]string{
		"status":              {"status"},
		"records list":        {"records", "list"},
		"records get":         {"records", "get", "01"},
		"revocations list":    {"revocations", "list"},
		"revoke":              {"revoke", "--serial", "01", "--reason", "keyCompromise"},
		"rotate status":       {"rotate", "status"},
		"rotate intermediate": {"rotate", "intermediate"},
		"sign":                {"sign", "--csr", csr, "--identity", id.String()},
		"cacerts":             {"cacerts", "--out", filepath.Join(t.TempDir(), "out")},
	}
	for name, args := range commands {
		t.Run(name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				dir := filepath.Join(t.TempDir(), "typo")
				if existing {
					require.NoError(t, os.Mkdir(dir, 0o700))
				}
				_, err := runMeshca(t, append(args, "--dir", dir)...)
				require.Error(t, err)
				want := "no meshca store at " + filepath.Join(dir, "meshca.db") + ": the file does not exist\n" +
					"there is no CA in " + dir + ": pass --dir (or --config) naming the CA, or create a development CA with 'meshca init --dir " + dir + "'"
				require.Equal(t, want, err.Error())
				if !existing {
					require.NoDirExists(t, dir)
					continue
				}
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Empty(t, entries, "nothing is created in the directory")
			}
		})
	}

	t.Run("a CA whose store is missing is not sent to init", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
		require.NoError(t, err)
		require.NoError(t, os.Remove(filepath.Join(dir, "meshca.db")))
		require.NoError(t, os.Remove(filepath.Join(dir, "meshca.db.journal")))
		_, err = runMeshca(t, "status", "--dir", dir)
		require.EqualError(t, err, "no meshca store at "+filepath.Join(dir, "meshca.db")+": the file does not exist\n"+
			dir+" holds a CA's files (root-cert.pem, root-key.pem, keys, meshca.yaml) but not its store: check store.path (in "+filepath.Join(dir, "meshca.yaml")+
			" if it has one) and that its volume is mounted, or restore the store from a backup; do not run 'meshca init' there, which would replace the CA's keys")
		require.NoFileExists(t, filepath.Join(dir, "meshca.db"))

		_, err = runMeshca(t, "status", "--config", filepath.Join(dir, "meshca.yaml"))
		require.EqualError(t, err, "no meshca store at "+filepath.Join(dir, "meshca.db")+": the file does not exist\n"+
			"check store.path in "+filepath.Join(dir, "meshca.yaml")+"; a CA whose root is in Vault or in root.file.cacertsDir gets its store at its first 'meshca serve'")
	})

	t.Run("meshca init still works there afterwards", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := runMeshca(t, "status", "--dir", dir)
		require.Error(t, err)
		_, err = runMeshca(t, "init", "--dir", dir, "--profile", "classical")
		require.NoError(t, err)
		out, err := runMeshca(t, "records", "list", "--dir", dir)
		require.NoError(t, err, out)
	})
}
