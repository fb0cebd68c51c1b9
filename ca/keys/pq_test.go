package keys_test

import (
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
)

// pkcs8 is a OneAsymmetricKey (RFC 5958) as far as these tests look.
type pkcs8 struct {
	Version    int
	Algorithm  struct{ Algorithm asn1.ObjectIdentifier }
	PrivateKey []byte
}

func readPKCS8(t *testing.T, path string) ([]byte, pkcs8) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	block, rest := pem.Decode(b)
	require.NotNil(t, block)
	require.Empty(t, strings.TrimSpace(string(rest)))
	require.Equal(t, "PRIVATE KEY", block.Type)
	var k pkcs8
	tail, err := asn1.Unmarshal(block.Bytes, &k)
	require.NoError(t, err)
	require.Empty(t, tail)
	return block.Bytes, k
}

func TestCreatePQ_MLDSAKeysAre0600SeedOnlyPKCS8AndReloadEqual(t *testing.T) {
	oids := map[string]asn1.ObjectIdentifier{
		"ML-DSA-44": {2, 16, 840, 1, 101, 3, 4, 3, 17},
		"ML-DSA-65": {2, 16, 840, 1, 101, 3, 4, 3, 18},
		"ML-DSA-87": {2, 16, 840, 1, 101, 3, 4, 3, 19},
	}
	m, dir := softManager(t)
	for alg, oid := range oids {
		t.Run(alg, func(t *testing.T) {
			signer, ref, err := m.CreatePQ("ca-"+strings.ToLower(alg), alg)
			require.NoError(t, err)
			require.Equal(t, filepath.Join(dir, "ca-"+strings.ToLower(alg)+".key"), ref)
			require.Equal(t, alg, keys.PQAlgorithmOf(signer.Public()))

			fi, err := os.Stat(ref)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

			der, k := readPKCS8(t, ref)
			require.Equal(t, 0, k.Version, "v1 PrivateKeyInfo: no public key attached")
			require.Equal(t, oid, k.Algorithm.Algorithm)
			// The privateKey OCTET STRING holds exactly the seed CHOICE:
			// [0] IMPLICIT OCTET STRING of 32 bytes = 0x80 0x20 || seed.
			require.Len(t, k.PrivateKey, 34)
			require.Equal(t, []byte{0x80, 0x20}, k.PrivateKey[:2])
			require.Equal(t, signer.(*mldsa.PrivateKey).Seed(), k.PrivateKey[2:])
			require.Less(t, len(der), 60, "seed-only: no expanded key in the file")

			loaded, err := m.LoadPQ(ref)
			require.NoError(t, err)
			require.True(t, loaded.(*mldsa.PrivateKey).Equal(signer))
			viaSigner, err := m.Signer("softkms:" + ref)
			require.NoError(t, err, "Signer reads PQ key files too (composite and mldsa CAs)")
			require.True(t, viaSigner.(*mldsa.PrivateKey).Equal(signer))

			msg := []byte("preTBSCertificate")
			sig, err := loaded.Sign(rand.Reader, msg, nil)
			require.NoError(t, err)
			require.NoError(t, signer.Public().(*mldsa.PublicKey).Verify(msg, sig))
		})
	}
}

func TestCreatePQ_CompositeKeysReloadEqual(t *testing.T) {
	m, _ := softManager(t)
	for _, alg := range []string{"MLDSA65-ECDSA-P256-SHA512", "MLDSA44-ECDSA-P256-SHA256"} {
		t.Run(alg, func(t *testing.T) {
			signer, ref, err := m.CreatePQ("ca-"+alg, alg)
			require.NoError(t, err)
			require.Equal(t, alg, keys.PQAlgorithmOf(signer.Public()))
			fi, err := os.Stat(ref)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

			loaded, err := m.LoadPQ(ref)
			require.NoError(t, err)
			require.True(t, loaded.(*composite.PrivateKey).Equal(signer))
			msg := []byte("TBSCertificate")
			sig, err := loaded.Sign(rand.Reader, msg, nil)
			require.NoError(t, err)
			require.NoError(t, signer.Public().(*composite.PublicKey).Verify(msg, sig))
		})
	}
}

func TestLoadPQ_RefusesWorldReadableKeyWithoutLeakingIt(t *testing.T) {
	m, _ := softManager(t)
	_, ref, err := m.CreatePQ("alt", "ML-DSA-65")
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(ref)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(ref, 0o644))

	for name, load := range map[string]func(string) error{
		"LoadPQ": func(r string) error { _, err := m.LoadPQ(r); return err },
		"Signer": func(r string) error { _, err := m.Signer(r); return err },
	} {
		err := load(ref)
		require.Error(t, err, name)
		require.Equal(t, "key file "+ref+" has mode 0644: it must not be readable by others or writable by its group; run: chmod 600 "+ref, err.Error(), name)
		requireNoKeyBytes(t, err.Error(), keyPEM)
	}
}

func TestLoadPQ_ClassicalKeyIsNotAPostQuantumKey(t *testing.T) {
	m, _ := softManager(t)
	_, ref, err := m.CreatePQ("alt", "ML-DSA-44")
	require.NoError(t, err)
	_, classical, err := m.Create("ca", keys.ECP256)
	require.NoError(t, err)
	_, err = m.LoadPQ(classical)
	require.EqualError(t, err, "key file "+classical+" holds a classical key where a post-quantum (ML-DSA or composite) key is needed")
	_, err = m.LoadPQ(ref)
	require.NoError(t, err)
}

func TestLoadPQ_MalformedMLDSAKeyDoesNotEchoContent(t *testing.T) {
	m, _ := softManager(t)
	good, err := pqc.GenerateKey("ML-DSA-65", nil)
	require.NoError(t, err)
	der, err := pqc.MarshalPKCS8PrivateKey(good)
	require.NoError(t, err)
	der[len(der)-34] = 0x81 // the seed CHOICE tag [0] becomes [1]: no such CHOICE
	path := filepath.Join(t.TempDir(), "bad.key")
	content := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	require.NoError(t, os.WriteFile(path, content, 0o600))
	for _, load := range []func(string) error{
		func(r string) error { _, err := m.LoadPQ(r); return err },
		func(r string) error { _, err := m.Signer(r); return err },
	} {
		err := load(path)
		require.EqualError(t, err, "key file "+path+" is not a valid post-quantum PKCS#8 private key")
		requireNoKeyBytes(t, err.Error(), content)
	}
}

func TestCreatePQ_RefusesUnknownAlgorithmAndOverwrite(t *testing.T) {
	m, dir := softManager(t)
	_, _, err := m.CreatePQ("alt", "SLH-DSA-128s")
	require.ErrorContains(t, err, `create key "alt": pqc: unknown signing algorithm "SLH-DSA-128s"`)
	_, statErr := os.Stat(filepath.Join(dir, "alt.key"))
	require.ErrorIs(t, statErr, os.ErrNotExist)

	_, ref, err := m.CreatePQ("alt", "ML-DSA-65")
	require.NoError(t, err)
	before, err := os.ReadFile(ref)
	require.NoError(t, err)
	_, _, err = m.CreatePQ("alt", "ML-DSA-65")
	require.ErrorIs(t, err, os.ErrExist)
	after, err := os.ReadFile(ref)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

// rfc9881Dir holds the RFC 9881 example keys (<repo>/../shared/testdata).
var rfc9881Dir = filepath.Join("..", "..", "..", "shared", "testdata", "pqc", "rfc9881")

// copy0600 copies an example key into a private file, as custody demands.
func copy0600(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rfc9881Dir, name))
	require.NoError(t, err, "the shared RFC 9881 examples must be present")
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func TestLoadPQ_ReadsRFC9881SeedExpandedAndBothFormsAsTheSameKey(t *testing.T) {
	m, _ := softManager(t)
	for _, alg := range []string{"ML-DSA-44", "ML-DSA-65", "ML-DSA-87"} {
		var first keys.PQSigner
		for _, form := range []string{"seed", "expanded", "both"} {
			k, err := m.LoadPQ(copy0600(t, alg+"-"+form+".priv"))
			require.NoError(t, err, "%s %s", alg, form)
			require.Equal(t, alg, keys.PQAlgorithmOf(k.Public()))
			if first == nil {
				first = k
				continue
			}
			require.True(t, first.Public().(*mldsa.PublicKey).Equal(k.Public()), "%s %s", alg, form)
		}
	}
}

func TestLoadPQ_RejectsTheMalformedRFC9881Examples(t *testing.T) {
	m, _ := softManager(t)
	for _, name := range []string{"bad-ML-DSA-44-1.priv", "bad-ML-DSA-44-2.priv", "bad-ML-DSA-44-3.priv"} {
		p := copy0600(t, name)
		content, err := os.ReadFile(p)
		require.NoError(t, err)
		_, err = m.LoadPQ(p)
		require.EqualError(t, err, "key file "+p+" is not a valid post-quantum PKCS#8 private key", name)
		requireNoKeyBytes(t, err.Error(), content)
	}
}
