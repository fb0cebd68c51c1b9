package keys_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
)

func softManager(t *testing.T) (*keys.Manager, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	m, err := keys.Open(context.Background(), keys.Config{Type: "softkms", Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m, dir
}

// signAndVerify signs a message with s the way a CA does for alg and checks
// the signature against pub.
func signAndVerify(t *testing.T, alg keys.Algorithm, s crypto.Signer, pub crypto.PublicKey) {
	t.Helper()
	msg := []byte("to be signed: a TBSCertificate")
	switch alg {
	case keys.ECP256:
		d := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		require.NoError(t, err)
		require.True(t, ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig))
	case keys.ECP384:
		d := sha512.Sum384(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA384)
		require.NoError(t, err)
		require.True(t, ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig))
	case keys.RSA3072:
		d := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		require.NoError(t, err)
		require.NoError(t, rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig))
	case keys.Ed25519:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		require.NoError(t, err)
		require.True(t, ed25519.Verify(pub.(ed25519.PublicKey), msg, sig))
	default:
		t.Fatalf("no signing recipe for %s", alg)
	}
}

func TestCreate_AllAlgorithmsWrite0600PKCS8FilesThatSignAndReload(t *testing.T) {
	m, dir := softManager(t)
	require.ElementsMatch(t, []keys.Algorithm{keys.ECP256, keys.ECP384, keys.RSA3072, keys.Ed25519}, keys.Algorithms)
	for _, alg := range keys.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			name := "ca-" + strings.ToLower(string(alg))
			signer, ref, err := m.Create(name, alg)
			require.NoError(t, err)
			require.Equal(t, filepath.Join(dir, name+".key"), ref)
			require.Equal(t, alg, keys.AlgorithmOf(signer.Public()))

			fi, err := os.Stat(ref)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

			b, err := os.ReadFile(ref)
			require.NoError(t, err)
			block, rest := pem.Decode(b)
			require.NotNil(t, block)
			require.Empty(t, strings.TrimSpace(string(rest)))
			require.Equal(t, "PRIVATE KEY", block.Type, "PKCS#8")
			parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			require.NoError(t, err)
			require.True(t, parsed.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()))

			signAndVerify(t, alg, signer, signer.Public())

			loaded, err := m.Signer(ref)
			require.NoError(t, err)
			signAndVerify(t, alg, loaded, signer.Public())

			viaPrefix, err := m.Signer("softkms:" + ref)
			require.NoError(t, err)
			signAndVerify(t, alg, viaPrefix, signer.Public())
		})
	}
}

func TestCreate_CreatesTheKeyDirectoryPrivate(t *testing.T) {
	m, dir := softManager(t)
	_, _, err := m.Create("ca", keys.ECP256)
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

func TestCreate_RefusesToOverwriteAnExistingKey(t *testing.T) {
	m, _ := softManager(t)
	_, ref, err := m.Create("ca", keys.ECP256)
	require.NoError(t, err)
	before, err := os.ReadFile(ref)
	require.NoError(t, err)

	_, _, err = m.Create("ca", keys.ECP256)
	require.Error(t, err)
	require.ErrorIs(t, err, os.ErrExist)

	after, err := os.ReadFile(ref)
	require.NoError(t, err)
	require.Equal(t, before, after, "the existing key must be untouched")
}

func TestCreate_RejectsUnknownAlgorithm(t *testing.T) {
	m, dir := softManager(t)
	_, _, err := m.Create("ca", keys.Algorithm("DSA-1024"))
	require.ErrorContains(t, err, `unsupported key algorithm "DSA-1024"`)
	_, statErr := os.Stat(filepath.Join(dir, "ca.key"))
	require.ErrorIs(t, statErr, os.ErrNotExist)
}

// requireNoKeyBytes checks that msg leaks nothing of the PEM key file.
func requireNoKeyBytes(t *testing.T, msg string, keyPEM []byte) {
	t.Helper()
	require.NotContains(t, msg, "PRIVATE KEY")
	block, _ := pem.Decode(keyPEM)
	require.NotNil(t, block)
	body := strings.Join(strings.Fields(string(keyPEM[strings.Index(string(keyPEM), "\n")+1:strings.Index(string(keyPEM), "-----END")])), "")
	for i := 0; i+16 <= len(body); i += 8 {
		require.NotContains(t, msg, body[i:i+16], "the error must not contain base64 key material")
	}
	require.NotContains(t, msg, string(block.Bytes))
}

func TestSigner_RefusesWorldReadableKeyWithoutLeakingIt(t *testing.T) {
	m, _ := softManager(t)
	_, ref, err := m.Create("ca", keys.ECP256)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(ref)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(ref, 0o644))

	s, err := m.Signer(ref)
	require.Nil(t, s)
	require.Error(t, err)
	require.Contains(t, err.Error(), "chmod 600 "+ref)
	require.Contains(t, err.Error(), "0644")
	requireNoKeyBytes(t, err.Error(), keyPEM)
}

func TestSigner_RefusesLooseModes(t *testing.T) {
	for _, mode := range []os.FileMode{0o620, 0o602, 0o604, 0o660, 0o666, 0o601} {
		t.Run(mode.String(), func(t *testing.T) {
			m, _ := softManager(t)
			_, ref, err := m.Create("ca", keys.ECP256)
			require.NoError(t, err)
			require.NoError(t, os.Chmod(ref, mode))
			_, err = m.Signer(ref)
			require.ErrorContains(t, err, "chmod 600")
		})
	}
}

func TestSigner_AcceptsOwnerOnlyModesAndSymlinks(t *testing.T) {
	m, dir := softManager(t)
	_, ref, err := m.Create("ca", keys.ECP256)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(ref, 0o400))
	_, err = m.Signer(ref)
	require.NoError(t, err)

	// Kubernetes Secret volumes present files as symlinks into ..data/.
	link := filepath.Join(dir, "ca-key.pem")
	require.NoError(t, os.Symlink(ref, link))
	_, err = m.Signer(link)
	require.NoError(t, err)
}

func TestSigner_MissingFileSaysSo(t *testing.T) {
	m, dir := softManager(t)
	path := filepath.Join(dir, "nope.key")
	_, err := m.Signer(path)
	require.EqualError(t, err, "key file "+path+" does not exist")
}

func TestSigner_DirectoryIsNotAKeyFile(t *testing.T) {
	m, _ := softManager(t)
	dir := filepath.Join(t.TempDir(), "d")
	require.NoError(t, os.Mkdir(dir, 0o700))
	_, err := m.Signer(dir)
	require.EqualError(t, err, "key file "+dir+" is not a regular file")
}

func TestSigner_UnparseableKeyDoesNotEchoContent(t *testing.T) {
	m, _ := softManager(t)
	path := filepath.Join(t.TempDir(), "bad.key")
	content := "-----BEGIN PRIVATE KEY-----\nTUVTSENBLVNFQ1JFVC1NQVJLRVI=\n-----END PRIVATE KEY-----\n"
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	_, err := m.Signer(path)
	require.EqualError(t, err, "key file "+path+" is not a readable unencrypted PEM private key")
	require.NotContains(t, err.Error(), "TUVTSENB")
}

func TestWriteKeyFile_Writes0600AndRefusesOverwrite(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "k.pem")
	require.NoError(t, keys.WriteKeyFile(path, k))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.NoError(t, keys.CheckKeyFile(path))

	require.ErrorIs(t, keys.WriteKeyFile(path, k), os.ErrExist)
}

func TestOpen_ChecksTheConfiguration(t *testing.T) {
	ctx := context.Background()
	_, err := keys.Open(ctx, keys.Config{Type: "softkms"})
	require.EqualError(t, err, "keyStore.dir must be set for softkms")

	_, err = keys.Open(ctx, keys.Config{Type: "vault"})
	require.EqualError(t, err, `keyStore.type "vault" is not supported; use softkms or pkcs11`)

	m, err := keys.Open(ctx, keys.Config{Dir: t.TempDir()})
	require.NoError(t, err, "an empty type means softkms")
	require.NoError(t, m.Close())

	pin := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.WriteFile(pin, []byte("1234"), 0o600))
	_, err = keys.Open(ctx, keys.Config{Type: "pkcs11", URI: "pkcs11:module-path=/nonexistent/libnothing.so;token=meshca?pin-source=" + pin})
	require.ErrorContains(t, err, "open pkcs11 key store (is meshca built with cgo and is the module path right?)")
	require.NotContains(t, err.Error(), "1234", "the PIN must not appear in errors")
}

func TestAlgorithm_ValidAndAlgorithmOf(t *testing.T) {
	for _, a := range keys.Algorithms {
		require.True(t, a.Valid(), a)
	}
	require.False(t, keys.Algorithm("EC-P521").Valid())
	require.False(t, keys.Algorithm("").Valid())

	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	require.Equal(t, keys.Algorithm(""), keys.AlgorithmOf(p521.Public()))
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	require.Equal(t, keys.Algorithm("RSA-2048"), keys.AlgorithmOf(rsa2048.Public()))
	require.False(t, keys.AlgorithmOf(rsa2048.Public()).Valid())
}
