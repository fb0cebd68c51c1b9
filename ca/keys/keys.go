// Package keys owns meshca's key custody. CA private keys are created and
// loaded only through go.step.sm/crypto/kms: softkms keeps them in files
// (written 0600, refused when other users can read them), and a PKCS#11
// module keeps them in a token. Callers get a crypto.Signer and an opaque
// key reference to store; they never see key bytes.
//
// Post-quantum CA keys (ML-DSA and composite ML-DSA, from ca/pqc), which
// kms does not know, are created and loaded with CreatePQ and LoadPQ under
// the same file custody: seed-only RFC 9881 PKCS#8, 0600, refused when
// readable by others. HSMs don't offer ML-DSA yet, so with a PKCS#11 key
// store the classical key is generated in the token and the ML-DSA key is
// such a file in the key directory.
//
// Keys and key bytes never appear in logs or in error messages produced here.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
	_ "go.step.sm/crypto/kms/pkcs11" // registers the PKCS#11 key manager (cgo)
	"go.step.sm/crypto/kms/softkms"
	"go.step.sm/crypto/kms/uri"
	"go.step.sm/crypto/pemutil"
)

// Algorithm names a CA key type as it appears in configuration.
type Algorithm string

// The CA key algorithms meshca can create.
const (
	ECP256  Algorithm = "EC-P256"
	ECP384  Algorithm = "EC-P384"
	RSA3072 Algorithm = "RSA-3072"
	Ed25519 Algorithm = "Ed25519"
)

// Algorithms lists the accepted values of Algorithm, for validation messages.
var Algorithms = []Algorithm{ECP256, ECP384, RSA3072, Ed25519}

// Valid reports whether a is a known algorithm.
func (a Algorithm) Valid() bool {
	for _, v := range Algorithms {
		if a == v {
			return true
		}
	}
	return false
}

func (a Algorithm) kmsRequest(name string) *apiv1.CreateKeyRequest {
	req := &apiv1.CreateKeyRequest{Name: name}
	switch a {
	case ECP384:
		req.SignatureAlgorithm = apiv1.ECDSAWithSHA384
	case RSA3072:
		req.SignatureAlgorithm = apiv1.SHA256WithRSA
		req.Bits = 3072
	case Ed25519:
		req.SignatureAlgorithm = apiv1.PureEd25519
	default:
		req.SignatureAlgorithm = apiv1.ECDSAWithSHA256
	}
	return req
}

// AlgorithmOf describes the public key of a signer in the vocabulary of
// Algorithm, or returns "" for keys meshca cannot create.
func AlgorithmOf(pub crypto.PublicKey) Algorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECP256
		case elliptic.P384():
			return ECP384
		}
	case *rsa.PublicKey:
		if k.N.BitLen() == 3072 {
			return RSA3072
		}
		return Algorithm(fmt.Sprintf("RSA-%d", k.N.BitLen()))
	case ed25519.PublicKey:
		return Ed25519
	}
	return ""
}

// Config selects the key manager.
type Config struct {
	// Type is "softkms" (files) or "pkcs11".
	Type string `json:"type"`
	// Dir is where softkms creates new key files. With pkcs11 it holds
	// only the post-quantum keys, which no token can hold yet.
	Dir string `json:"dir"`
	// URI configures the PKCS#11 module, for example
	// "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=meshca?pin-source=/etc/meshca/pin".
	URI string `json:"uri"`
}

// Manager creates and loads CA keys.
type Manager struct {
	km   apiv1.KeyManager
	typ  apiv1.Type
	dir  string
	soft bool
}

// Open returns a Manager for cfg.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	typ := apiv1.Type(strings.ToLower(cfg.Type))
	if typ == "" {
		typ = apiv1.SoftKMS
	}
	switch typ {
	case apiv1.SoftKMS:
		if cfg.Dir == "" {
			return nil, errors.New("keyStore.dir must be set for softkms")
		}
		km, err := softkms.New(ctx, apiv1.Options{Type: apiv1.SoftKMS})
		if err != nil {
			return nil, fmt.Errorf("open softkms: %w", err)
		}
		return &Manager{km: km, typ: typ, dir: cfg.Dir, soft: true}, nil
	case apiv1.PKCS11:
		if err := checkPIN(cfg.URI); err != nil {
			return nil, err
		}
		km, err := kms.New(ctx, apiv1.Options{Type: apiv1.PKCS11, URI: cfg.URI})
		if err != nil {
			return nil, fmt.Errorf("open pkcs11 key store (is meshca built with cgo and is the module path right?): %w", err)
		}
		// dir holds the post-quantum keys that no token can hold yet.
		return &Manager{km: km, typ: typ, dir: cfg.Dir}, nil
	default:
		return nil, fmt.Errorf("keyStore.type %q is not supported; use softkms or pkcs11", cfg.Type)
	}
}

// Close releases the key manager.
func (m *Manager) Close() error { return m.km.Close() }

// Create generates a new key called name and returns its signer and the
// reference to store. With softkms the reference is the path of a new 0600
// PKCS#8 file in the key directory; an existing file is never overwritten.
func (m *Manager) Create(name string, alg Algorithm) (crypto.Signer, string, error) {
	if !alg.Valid() {
		return nil, "", fmt.Errorf("unsupported key algorithm %q (use one of %v)", alg, Algorithms)
	}
	if !m.soft {
		resp, err := m.km.CreateKey(alg.kmsRequest(pkcs11Name(name)))
		if err != nil {
			return nil, "", fmt.Errorf("create key %q: %w", name, err)
		}
		s, err := m.km.CreateSigner(&resp.CreateSignerRequest)
		if err != nil {
			return nil, "", fmt.Errorf("load new key %q: %w", name, err)
		}
		return s, resp.Name, nil
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create key directory %s: %w", m.dir, err)
	}
	resp, err := m.km.CreateKey(alg.kmsRequest(name))
	if err != nil {
		return nil, "", fmt.Errorf("create key %q: %w", name, err)
	}
	signer, ok := resp.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, "", fmt.Errorf("create key %q: key manager returned no signer", name)
	}
	path := filepath.Join(m.dir, name+".key")
	if err := WriteKeyFile(path, signer); err != nil {
		return nil, "", err
	}
	return signer, path, nil
}

func pkcs11Name(name string) string {
	return "pkcs11:id=" + name + ";object=" + name
}

// Signer loads the key behind ref. For files it first checks that no other
// user can read the file.
func (m *Manager) Signer(ref string) (crypto.Signer, error) {
	if m.soft || isFileRef(ref) {
		if err := CheckKeyFile(ref); err != nil {
			return nil, err
		}
		// ML-DSA and composite keys (composite and mldsa CAs) are read here:
		// softkms knows only classical keys.
		path := strings.TrimPrefix(ref, "softkms:")
		b, err := readKeyFile(path)
		if err != nil {
			return nil, err
		}
		if s, isPQ, err := parsePQKey(path, b); isPQ || err != nil {
			return s, err
		}
		// What softkms does with a key file, on the bounded bytes: a key
		// file needs no key manager.
		k, err := pemutil.ParseKey(b)
		s, ok := k.(crypto.Signer)
		if err != nil || !ok {
			// Do not wrap: some parsers echo input bytes in their errors.
			return nil, fmt.Errorf("key file %s is not a readable unencrypted PEM private key", ref)
		}
		return s, nil
	}
	s, err := m.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: ref})
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", ref, err)
	}
	return s, nil
}

func isFileRef(ref string) bool {
	return !strings.Contains(ref, ":") || strings.HasPrefix(ref, "softkms:")
}

// FilePath returns the file that a key reference names, and false for a
// reference into a key manager (a PKCS#11 or KMS URI).
func FilePath(ref string) (string, bool) {
	if !isFileRef(ref) {
		return "", false
	}
	return strings.TrimPrefix(ref, "softkms:"), true
}

// CheckKeyFile refuses a key file that other users may read or that anyone
// but the owner may write, and explains the fix.
func CheckKeyFile(path string) error {
	return checkPrivateFile("key file", strings.TrimPrefix(path, "softkms:"))
}

func checkPrivateFile(what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s does not exist", what, path)
		}
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%s %s has mode %#o: it must not be readable by others or writable by its group; run: chmod 600 %s", what, path, perm, path)
	}
	return nil
}

// checkPIN keeps the token's user PIN out of the configuration: the
// pkcs11: URI (RFC 7512) must not carry it as pin-value, and the file that
// pin-source names gets the same permission check as a key file. Errors
// never echo the URI, which may hold the PIN.
func checkPIN(rawURI string) error {
	u, err := uri.ParseWithScheme("pkcs11", rawURI)
	if err != nil {
		return errors.New("keyStore.uri is not a valid pkcs11: URI (RFC 7512), e.g. pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=meshca?pin-source=/etc/meshca/pin")
	}
	if u.Has("pin-value") {
		return errors.New("keyStore.uri: pin-value puts the PIN in the configuration; use pin-source=FILE with the PIN in a 0600 file")
	}
	if src := u.Get("pin-source"); src != "" {
		// As go.step.sm/crypto/kms/uri reads it: a path or a file: URL.
		if u, err := url.Parse(src); err == nil && (u.Scheme == "" || u.Scheme == "file") {
			switch {
			case u.Path != "":
				src = u.Path
			case u.Opaque != "":
				src = u.Opaque
			}
		}
		if err := checkPrivateFile("PIN file", src); err != nil {
			return err
		}
		// The PKCS#11 key manager logs in with an empty PIN when it cannot
		// read the file, and a token locks its user PIN after a few failed
		// logins: refuse an unreadable or empty file before any login.
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("PIN file %s cannot be read by meshca (uid %d): %w; mount it readable by meshca's user or group", src, os.Getuid(), errors.Unwrap(err))
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return fmt.Errorf("PIN file %s is empty; write the token's user PIN into it", src)
		}
	}
	return nil
}

// WriteKeyFile writes key as an unencrypted PKCS#8 PEM file with mode 0600.
// It refuses to overwrite an existing file.
func WriteKeyFile(path string, key crypto.PrivateKey) error {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return fmt.Errorf("encode key for %s: %w", path, err)
	}
	return writePrivateFile(path, pem.EncodeToMemory(block))
}

// writePrivateFile creates path with mode 0600, writes b and syncs it. It
// refuses to overwrite an existing file.
func writePrivateFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	return f.Close()
}
