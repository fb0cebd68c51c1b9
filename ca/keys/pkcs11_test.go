package keys_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/test/hsmenv"
)

// hsmManager opens a pkcs11 Manager on a fresh SoftHSM2 token. keyStore.dir
// is set (it holds ML-DSA keys for a catalyst CA) so that the tests can
// check that no classical key file appears there.
func hsmManager(t *testing.T) (*keys.Manager, *hsmenv.Env, string) {
	t.Helper()
	hsm := hsmenv.New(t)
	dir := filepath.Join(t.TempDir(), "keys")
	m, err := keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: hsm.URI, Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m, hsm, dir
}

// requireNoFiles fails when anything exists under dir (a missing dir is empty).
func requireNoFiles(t *testing.T, dir string) {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, found, "a PKCS#11 key must leave no file behind")
}

func TestPKCS11_CreateGeneratesANonExtractableKeyInTheTokenThatSignsAndReloads(t *testing.T) {
	for _, tc := range []struct {
		alg     keys.Algorithm
		keyType uint
	}{
		{keys.ECP256, pkcs11.CKK_EC},
		{keys.ECP384, pkcs11.CKK_EC},
		{keys.RSA3072, pkcs11.CKK_RSA},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			m, hsm, dir := hsmManager(t)
			name := "intermediate-" + strings.ToLower(string(tc.alg))
			signer, ref, err := m.Create(name, tc.alg)
			require.NoError(t, err)
			require.Equal(t, "pkcs11:id="+name+";object="+name, ref)
			require.Equal(t, tc.alg, keys.AlgorithmOf(signer.Public()))
			_, isFile := keys.FilePath(ref)
			require.False(t, isFile)

			// The signer is a handle into the token, not key material.
			switch signer.(type) {
			case *ecdsa.PrivateKey, *rsa.PrivateKey:
				t.Fatalf("Create returned a software key %T for a PKCS#11 key store", signer)
			}
			requireNoFiles(t, dir)

			// The token holds it as PKCS#11 v2.40 §4.9 describes a key that
			// never left the device: generated there (CKA_LOCAL), persistent
			// (CKA_TOKEN), sensitive and not extractable, ever.
			obj, err := hsm.PrivateKey(name)
			require.NoError(t, err)
			require.Equal(t, hsmenv.Object{
				Class: pkcs11.CKO_PRIVATE_KEY, Label: name, ID: name, KeyType: tc.keyType,
				Token: true, Sensitive: true, Extractable: false, NeverExtractable: true, Local: true,
			}, obj)

			signAndVerify(t, tc.alg, signer, signer.Public())

			// A restart: a new Manager on the same token finds the key by
			// its reference, and it is the same key.
			require.NoError(t, m.Close())
			m2, err := keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: hsm.URI, Dir: dir})
			require.NoError(t, err)
			t.Cleanup(func() { _ = m2.Close() })
			loaded, err := m2.Signer(ref)
			require.NoError(t, err)
			require.True(t, loaded.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()))
			signAndVerify(t, tc.alg, loaded, signer.Public())
			requireNoFiles(t, dir)
		})
	}
}

func TestPKCS11_CreateRefusesToReplaceAnExistingKey(t *testing.T) {
	m, hsm, _ := hsmManager(t)
	first, ref, err := m.Create("intermediate", keys.ECP256)
	require.NoError(t, err)

	_, _, err = m.Create("intermediate", keys.ECP256)
	require.ErrorContains(t, err, "already exists")

	labels, err := hsm.PrivateKeyLabels()
	require.NoError(t, err)
	require.Equal(t, []string{"intermediate"}, labels)
	still, err := m.Signer(ref)
	require.NoError(t, err)
	require.True(t, still.Public().(*ecdsa.PublicKey).Equal(first.Public()))
}

func TestPKCS11_SignerOfAnUnknownKeyFails(t *testing.T) {
	m, _, _ := hsmManager(t)
	_, err := m.Signer("pkcs11:id=nothing;object=nothing")
	require.Error(t, err)
}

func TestPKCS11_OpenWithAWrongPINFailsWithoutShowingIt(t *testing.T) {
	hsm := hsmenv.New(t)
	wrong := filepath.Join(t.TempDir(), "wrong-pin")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-pin-4711"), 0o600))
	uri := strings.Replace(hsm.URI, hsm.PINFile, wrong, 1)
	_, err := keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: uri})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "not-the-pin-4711")
}

// A catalyst CA on a PKCS#11 key store: the classical key is generated in
// the token, and the ML-DSA key, which HSMs don't offer yet, is a 0600
// seed-only file in keyStore.dir.
func TestPKCS11_CatalystKeepsTheMLDSAKeyInA0600FileBesideTheTokenKey(t *testing.T) {
	m, hsm, dir := hsmManager(t)
	_, ref, err := m.Create("intermediate-1", keys.ECP256)
	require.NoError(t, err)
	pq, pqRef, err := m.CreatePQ("intermediate-1-ml-dsa-65", "ML-DSA-65")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "intermediate-1-ml-dsa-65.key"), pqRef)
	fi, err := os.Stat(pqRef)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the ML-DSA key is a file")

	labels, err := hsm.PrivateKeyLabels()
	require.NoError(t, err)
	require.Equal(t, []string{"intermediate-1"}, labels, "only the classical key is in the token")

	loaded, err := m.LoadPQ(pqRef)
	require.NoError(t, err)
	require.Equal(t, "ML-DSA-65", keys.PQAlgorithmOf(loaded.Public()))
	require.True(t, loaded.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pq.Public()))
	classical, err := m.Signer(ref)
	require.NoError(t, err)
	signAndVerify(t, keys.ECP256, classical, classical.Public())
}

func TestPKCS11_CreatePQWithoutAKeyDirectorySaysWhatToSet(t *testing.T) {
	hsm := hsmenv.New(t)
	m, err := keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: hsm.URI})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	_, _, err = m.CreatePQ("intermediate-1-ml-dsa-65", "ML-DSA-65")
	require.ErrorContains(t, err, "set keyStore.dir")
	require.ErrorContains(t, err, "HSMs don't offer ML-DSA yet")
}

// The PIN stays out of the configuration: a pin-value in the URI is
// refused without echoing it, and so is a PIN file that others may read.
func TestPKCS11_OpenRefusesAPINInTheURIOrAPINFileOthersCanRead(t *testing.T) {
	hsm := hsmenv.New(t)
	pin, err := os.ReadFile(hsm.PINFile)
	require.NoError(t, err)

	inURI := strings.Replace(hsm.URI, "pin-source="+hsm.PINFile, "pin-value="+string(pin), 1)
	_, err = keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: inURI})
	require.ErrorContains(t, err, "keyStore.uri: pin-value puts the PIN in the configuration; use pin-source=")
	require.NotContains(t, err.Error(), string(pin))

	require.NoError(t, os.Chmod(hsm.PINFile, 0o644))
	_, err = keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: hsm.URI})
	require.ErrorContains(t, err, "PIN file "+hsm.PINFile+" has mode 0644")
	require.ErrorContains(t, err, "chmod 600 "+hsm.PINFile)

	// An empty PIN file would make the key manager log in with an empty
	// PIN (a failed login a token counts toward locking the PIN).
	require.NoError(t, os.WriteFile(hsm.PINFile, []byte("\n"), 0o600))
	require.NoError(t, os.Chmod(hsm.PINFile, 0o600))
	_, err = keys.Open(context.Background(), keys.Config{Type: "pkcs11", URI: hsm.URI})
	require.EqualError(t, err, "PIN file "+hsm.PINFile+" is empty; write the token's user PIN into it")
}
