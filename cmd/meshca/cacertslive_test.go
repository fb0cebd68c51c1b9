package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/issuer/admin"
)

// fakeCACerts is a running serve's cacerts route that names keyRef.
type fakeCACerts struct {
	files  map[string]string
	keyRef string
}

func (f fakeCACerts) CACerts(context.Context, bool) (admin.CACerts, error) {
	return admin.CACerts{Generation: 1, KeyRef: f.keyRef, Files: f.files}, nil
}

// fakeServe answers the cacerts route on a socket with src.
func fakeServe(t *testing.T, src admin.CACertsSource) *admin.Client {
	t.Helper()
	d, err := os.MkdirTemp("", "c1") // sun_path is short
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	sock := filepath.Join(d, "admin.sock")
	s, err := admin.Listen(admin.Options{Socket: sock, CACerts: src, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	c := admin.NewClient(sock)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLiveCACerts_ReadsOnlyAMatchingKeyInsideTheKeyDirectories: the CLI
// side of cacerts while serve runs. The server names the key file; the CLI
// reads it only from its configuration's key directories (symlinks
// resolved), never a key manager's, and only a key that matches
// ca-cert.pem. A server that names any other file gets nothing read.
func TestLiveCACerts_ReadsOnlyAMatchingKeyInsideTheKeyDirectories(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	offline := filepath.Join(t.TempDir(), "offline")
	_, err = runMeshca(t, "cacerts", "--dir", dir, "--out", offline)
	require.NoError(t, err)
	want := map[string][]byte{}
	public := map[string]string{}
	for _, n := range []string{"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"} {
		b, err := os.ReadFile(filepath.Join(offline, n))
		require.NoError(t, err)
		want[n] = b
		if n != "ca-key.pem" {
			public[n] = string(b)
		}
	}
	cfg := config.Defaults(dir)
	gens := generations(t, dir)
	require.Len(t, gens, 1)
	keyFile := gens[0].KeyRef
	require.True(t, filepath.IsAbs(keyFile), keyFile)

	// The same key, outside the key directory: a server must not make the
	// CLI read it, even though it matches.
	outside := filepath.Join(t.TempDir(), "stolen.key")
	b, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(outside, b, 0o600))
	link := filepath.Join(dir, "keys", "link.key")
	require.NoError(t, os.Symlink(outside, link))
	dirLink := filepath.Join(dir, "keys", "up")
	require.NoError(t, os.Symlink(filepath.Dir(outside), dirLink))
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherFile := filepath.Join(dir, "keys", "other.key")
	require.NoError(t, keys.WriteKeyFile(otherFile, other))
	keysDir := filepath.Join(dir, "keys")
	notInside := func(p string) string {
		return "meshca serve names the key file " + p + ", which is not inside this configuration's key directories [" + keysDir + "]; refusing to read it (is --dir or --config the directory that meshca serve runs on?)"
	}

	for name, tc := range map[string]struct{ ref, err string }{
		"outside":               {outside, notInside(outside)},
		"dot-dot":               {keysDir + "/../../../" + filepath.Base(filepath.Dir(outside)) + "/stolen.key", notInside(keysDir + "/../../../" + filepath.Base(filepath.Dir(outside)) + "/stolen.key")},
		"missing file outside":  {"/nonexistent/x.key", notInside("/nonexistent/x.key")},
		"symlink to outside":    {link, notInside(link)},
		"through a dir symlink": {filepath.Join(dirLink, "stolen.key"), notInside(filepath.Join(dirLink, "stolen.key"))},
		"relative":              {"keys/" + filepath.Base(keyFile), notInside("keys/" + filepath.Base(keyFile))},
		"/etc/passwd":           {"/etc/passwd", notInside("/etc/passwd")},
		"pkcs11":                {"pkcs11:id=gen-1;object=gen-1", "the intermediate key of generation 1 cannot be exported (it lives in a key manager); Istio's plug-in mode needs the key in ca-key.pem"},
		"another key inside":    {otherFile, "key file " + otherFile + " of generation 1 does not match its ca-cert.pem: "},
		"the generation's key":  {keyFile, ""},
		"softkms: prefix":       {"softkms:" + keyFile, ""},
	} {
		t.Run(name, func(t *testing.T) {
			c := fakeServe(t, fakeCACerts{files: public, keyRef: tc.ref})
			files, gen, err := liveCACerts(context.Background(), cfg, c, false)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.NotContains(t, err.Error(), "PRIVATE KEY")
				require.Nil(t, files)
				return
			}
			require.NoError(t, err)
			require.Equal(t, uint64(1), gen)
			require.Equal(t, want, files, "the files the offline export writes")
		})
	}
}
