package keys

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/meshca/meshca/ca/smallfile"
)

// PQSigner is a post-quantum CA key: an ML-DSA (RFC 9881) or composite
// ML-DSA private key from ca/pqc. It signs whole messages and names its
// own X.509 signature algorithm, which is what ca/certenc's
// AlgorithmSigner asks for.
type PQSigner interface {
	crypto.Signer
	SignatureAlgorithm() pkix.AlgorithmIdentifier
}

// PQAlgorithms lists the post-quantum key algorithms CreatePQ accepts.
func PQAlgorithms() []string { return pqc.SigningAlgorithms() }

// PQAlgorithmOf names a post-quantum key's algorithm ("ML-DSA-65",
// "MLDSA65-ECDSA-P256-SHA512"), or returns "" for other keys.
func PQAlgorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *mldsa.PublicKey:
		return k.ParameterSet().Name()
	case *composite.PublicKey:
		return k.Algorithm().Name()
	}
	return ""
}

// CreatePQ generates a post-quantum key called name (alg is one of
// PQAlgorithms) and returns its signer and the reference to store. The key
// is written with softkms custody: a new 0600 PKCS#8 PEM file in the key
// directory, ML-DSA keys in the seed-only form RFC 9881 recommends. An
// existing file is never overwritten. HSMs don't offer ML-DSA yet (PKCS#11
// 3.2 defines it, but neither tokens nor go.step.sm/crypto's PKCS#11 key
// manager implement it), so a pkcs11 key store keeps its
// post-quantum keys in the same files, in keyStore.dir, and refuses
// without one.
func (m *Manager) CreatePQ(name, alg string) (PQSigner, string, error) {
	if m.dir == "" {
		return nil, "", fmt.Errorf("create %s key %q: set keyStore.dir: HSMs don't offer ML-DSA yet, so with keyStore.type %s meshca keeps post-quantum keys in 0600 files there (or use intermediate.profile: classical)", alg, name, m.typ)
	}
	key, err := pqc.GenerateKey(alg, nil)
	if err != nil {
		return nil, "", fmt.Errorf("create key %q: %w", name, err)
	}
	signer, ok := key.(PQSigner)
	if !ok {
		return nil, "", fmt.Errorf("create key %q: %T is not a post-quantum signer", name, key)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create key directory %s: %w", m.dir, err)
	}
	path := filepath.Join(m.dir, name+".key")
	if err := WritePQKeyFile(path, signer); err != nil {
		return nil, "", err
	}
	return signer, path, nil
}

// LoadPQ loads the post-quantum key behind ref (a file path, optionally
// prefixed "softkms:"), after the same permission check as Signer. ML-DSA
// keys may be seed-only, expanded-only or both (RFC 9881).
func (m *Manager) LoadPQ(ref string) (PQSigner, error) {
	path := strings.TrimPrefix(ref, "softkms:")
	if !isFileRef(ref) {
		return nil, fmt.Errorf("post-quantum key %s: only key files are supported (a PKCS#11 token cannot hold ML-DSA keys yet)", ref)
	}
	if err := CheckKeyFile(path); err != nil {
		return nil, err
	}
	s, isPQ, err := readPQKeyFile(path)
	if err != nil {
		return nil, err
	}
	if !isPQ {
		return nil, fmt.Errorf("key file %s holds a classical key where a post-quantum (ML-DSA or composite) key is needed", path)
	}
	return s, nil
}

// readPQKeyFile parses path when it is a PKCS#8 ML-DSA or composite key.
// isPQ is false for anything else (classical PKCS#8, SEC1, PKCS#1, ...),
// which softkms then reads. Errors never echo key bytes.
func readPQKeyFile(path string) (PQSigner, bool, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, false, err
	}
	return parsePQKey(path, b)
}

// readKeyFile reads a key file: a regular file of at most
// smallfile.MaxSize (Errors never echo key bytes).
func readKeyFile(path string) ([]byte, error) {
	b, err := smallfile.Read(path, smallfile.MaxSize)
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return nil, fmt.Errorf("key file %s: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("key file %w", err) // it names the path
	}
	return b, nil
}

// parsePQKey parses b, the content of key file path, like readPQKeyFile.
func parsePQKey(path string, b []byte) (PQSigner, bool, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || !isPQPKCS8(block.Bytes) {
		return nil, false, nil
	}
	key, err := pqc.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// Do not wrap: some parsers echo input bytes in their errors.
		return nil, true, fmt.Errorf("key file %s is not a valid post-quantum PKCS#8 private key", path)
	}
	s, ok := key.(PQSigner)
	if !ok {
		return nil, true, fmt.Errorf("key file %s is not a post-quantum signing key", path)
	}
	return s, true, nil
}

// isPQPKCS8 reports whether a PKCS#8 PrivateKeyInfo names an ML-DSA,
// HashML-DSA or composite algorithm (which ca/pqc parses or rejects).
func isPQPKCS8(der []byte) bool {
	in := cryptobyte.String(der)
	var info, alg cryptobyte.String
	var version int64
	var oid asn1.ObjectIdentifier
	if !in.ReadASN1(&info, cbasn1.SEQUENCE) || !info.ReadASN1Integer(&version) ||
		!info.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return false
	}
	if _, ok := mldsa.ParameterSetByOID(oid); ok {
		return true
	}
	if _, ok := composite.AlgorithmByOID(oid); ok {
		return true
	}
	return mldsa.IsHashMLDSAOID(oid)
}

// WritePQKeyFile writes a post-quantum key as an unencrypted PKCS#8 PEM
// file with mode 0600 (ML-DSA seed-only). It refuses to overwrite an
// existing file.
func WritePQKeyFile(path string, key PQSigner) error {
	if key == nil {
		return errors.New("write key file: no key")
	}
	b, err := pqc.MarshalPrivateKeyPEM(key)
	if err != nil {
		return fmt.Errorf("encode key for %s: %w", path, err)
	}
	return writePrivateFile(path, b)
}
