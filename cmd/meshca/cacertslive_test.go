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

// TestLiveCACerts_RefusesFilesThatDoNotMakeAChain: the public files from
// the socket are checked as a pre-issued cacerts folder is, before any key
// is read, so that the folder istiod is given is a usable chain: ca-cert.pem
// one signing CA, cert-chain.pem starting with it, root-cert.pem self-signed
// CAs it verifies to.
func TestLiveCACerts_RefusesFilesThatDoNotMakeAChain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir, "--profile", "classical")
	require.NoError(t, err)
	other := filepath.Join(t.TempDir(), "other")
	_, err = runMeshca(t, "init", "--dir", other, "--profile", "classical")
	require.NoError(t, err)
	read := func(d, n string) string {
		out := filepath.Join(t.TempDir(), "out")
		_, err := runMeshca(t, "cacerts", "--dir", d, "--out", out)
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(out, n))
		require.NoError(t, err)
		return string(b)
	}
	good := map[string]string{}
	for _, n := range []string{"ca-cert.pem", "cert-chain.pem", "root-cert.pem"} {
		good[n] = read(dir, n)
	}
	cfg := config.Defaults(dir)
	gens := generations(t, dir)
	require.Len(t, gens, 1)

	for name, tc := range map[string]struct{ file, content, err string }{
		"another CA's root": {"root-cert.pem", read(other, "root-cert.pem"),
			"refusing the cacerts files of generation 1: meshca serve's ca-cert.pem does not verify to meshca serve's root-cert.pem: "},
		"a chain of another CA": {"cert-chain.pem", read(other, "cert-chain.pem"),
			"refusing the cacerts files of generation 1: meshca serve's cert-chain.pem: must start with the certificate in ca-cert.pem"},
		"the root as ca-cert.pem": {"ca-cert.pem", good["root-cert.pem"],
			"refusing the cacerts files of generation 1: meshca serve's cert-chain.pem: must start with the certificate in ca-cert.pem"},
		"two certificates in ca-cert.pem": {"ca-cert.pem", good["ca-cert.pem"] + good["root-cert.pem"],
			"refusing the cacerts files of generation 1: meshca serve's ca-cert.pem: holds 2 certificates; it must hold only the signing certificate"},
		"not PEM": {"root-cert.pem", "junk",
			"refusing the cacerts files of generation 1: meshca serve's root-cert.pem: contains data that is not PEM"},
	} {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{}
			for n, b := range good {
				files[n] = b
			}
			files[tc.file] = tc.content
			c := fakeServe(t, fakeCACerts{files: files, keyRef: gens[0].KeyRef})
			got, _, err := liveCACerts(context.Background(), cfg, c, false)
			require.ErrorContains(t, err, tc.err)
			require.Nil(t, got)
		})
	}
}
