// Package cacerts owns the content of Istio's plug-in CA material, the
// `cacerts` Secret (contracts §2): which keys exist, what each holds and in
// which order, and the byte-append rule for root-cert.pem. Writing it to a
// directory or to a Kubernetes Secret is done by the callers.
package cacerts

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"go.step.sm/crypto/pemutil"

	"github.com/meshca/meshca/ca/root"
)

// Istio's Secret keys.
const (
	KeyCACert    = root.CACertFile
	KeyCAKey     = root.CAKeyFile
	KeyCertChain = root.CertChainFile
	KeyRootCert  = root.RootCertFile
	KeyCRL       = root.CRLFile
)

// Files returns the cacerts content for a signing bundle: ca-cert.pem, the
// PKCS#8 ca-key.pem, cert-chain.pem (signing cert up to its root, in order),
// root-cert.pem (every root), and ca-crl.pem when crls is not empty.
func Files(b *root.Bundle, key crypto.PrivateKey, crls []byte) (map[string][]byte, error) {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	var keyPEM bytes.Buffer
	if err := pem.Encode(&keyPEM, block); err != nil {
		return nil, err
	}
	files := map[string][]byte{
		KeyCACert:    root.EncodePEM(b.Cert),
		KeyCAKey:     keyPEM.Bytes(),
		KeyCertChain: root.EncodePEM(b.Chain()...),
		KeyRootCert:  root.EncodePEM(b.Roots...),
	}
	if len(crls) > 0 {
		files[KeyCRL] = crls
	}
	return files, nil
}

// WriteDir writes files into dir: ca-key.pem with mode 0600, the others 0644.
// Existing files are replaced atomically (write to a temporary file, rename).
func WriteDir(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == KeyCAKey {
			mode = 0o600
		}
		if err := writeAtomic(filepath.Join(dir, name), content, mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// MergeRoots returns the new root-cert.pem content for a change from old to
// want that istiod accepts under ISTIO_MULTIROOT_MESH in both 1.20–1.29
// (byte substring/superstring) and 1.30+ (certificate sets): roots in want
// that are already in old keep their bytes and order, new roots are appended
// after them, and removed roots are cut out so that the result is a byte
// substring of old whenever want is a subset of old that keeps contiguous
// roots (the rotation sequence A → A+B → B always does).
func MergeRoots(old []byte, want []*x509.Certificate) ([]byte, error) {
	oldCerts, err := root.ParseCertificates(old)
	if err != nil && len(bytes.TrimSpace(old)) > 0 {
		return nil, fmt.Errorf("current root-cert.pem: %w", err)
	}
	inWant := func(c *x509.Certificate) bool {
		for _, w := range want {
			if w.Equal(c) {
				return true
			}
		}
		return false
	}
	var out bytes.Buffer
	// Keep the old roots that stay, contiguous and in their original order.
	var kept []*x509.Certificate
	for _, c := range oldCerts {
		if inWant(c) {
			kept = append(kept, c)
		}
	}
	out.Write(root.EncodePEM(kept...))
	for _, w := range want {
		found := false
		for _, k := range kept {
			if k.Equal(w) {
				found = true
				break
			}
		}
		if !found {
			out.Write(root.EncodePEM(w))
		}
	}
	return out.Bytes(), nil
}
