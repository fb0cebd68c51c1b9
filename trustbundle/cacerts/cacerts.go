// Package cacerts owns the content of Istio's plug-in CA material, the
// `cacerts` Secret (Istio docs, "Plug in CA Certificates"): which keys
// exist, what each holds and in which order, and the byte-append rule for
// root-cert.pem. Writing it to a
// directory or to a Kubernetes Secret is done by the callers.
package cacerts

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
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
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return nil, err
	}
	files := PublicFiles(b, crls)
	files[KeyCAKey] = keyPEM
	return files, nil
}

// PublicFiles is Files without ca-key.pem: what may be handed to anyone
// who may read the CA's certificates.
func PublicFiles(b *root.Bundle, crls []byte) map[string][]byte {
	files := map[string][]byte{
		KeyCACert:    root.EncodePEM(b.Cert),
		KeyCertChain: root.EncodePEM(b.Chain()...),
		KeyRootCert:  root.EncodePEM(b.Roots...),
	}
	if len(crls) > 0 {
		files[KeyCRL] = crls
	}
	return files
}

// KeyPEM is the content of ca-key.pem for key: unencrypted PKCS#8.
func KeyPEM(key crypto.PrivateKey) ([]byte, error) {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	var keyPEM bytes.Buffer
	if err := pem.Encode(&keyPEM, block); err != nil {
		return nil, err
	}
	return keyPEM.Bytes(), nil
}

// WriteDir writes files into dir: ca-key.pem with mode 0600, the others 0644.
// Existing files are replaced atomically (write to a temporary file, rename).
// A ca-crl.pem in dir that files do not hold is removed, and returned in
// removed: it is an earlier export's, and Istio enforces the CRLs of a
// cacerts Secret made from the folder (a CRL of another intermediate, or
// one past its nextUpdate, fails the Secret or every handshake).
func WriteDir(dir string, files map[string][]byte) (removed []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == KeyCAKey {
			mode = 0o600
		}
		if err := writeAtomic(filepath.Join(dir, name), content, mode); err != nil {
			return nil, err
		}
	}
	if _, ok := files[KeyCRL]; !ok {
		switch err := os.Remove(filepath.Join(dir, KeyCRL)); {
		case err == nil:
			removed = append(removed, KeyCRL)
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("remove the stale %s: %w", KeyCRL, err)
		}
	}
	return removed, nil
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
	olds, err := scanRoots(old)
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
	var kept []oldRoot
	for _, o := range olds {
		if inWant(o.cert) {
			kept = append(kept, o)
		}
	}
	var out bytes.Buffer
	if len(olds) > 0 && len(kept) == len(olds) {
		// Nothing removed: keep the file byte for byte, so that the new
		// content starts with the old.
		out.Write(old)
	} else {
		// Copy each run of adjacent kept roots as one slice of old, so that
		// a contiguous selection is a byte substring of old.
		for i := 0; i < len(kept); {
			j := i
			for j+1 < len(kept) && kept[j+1].index == kept[j].index+1 {
				j++
			}
			out.Write(old[kept[i].start:kept[j].end])
			i = j + 1
		}
	}
	for _, w := range want {
		found := false
		for _, k := range kept {
			if k.cert.Equal(w) {
				found = true
				break
			}
		}
		if !found {
			if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
				out.WriteByte('\n')
			}
			out.Write(root.EncodePEM(w))
		}
	}
	return out.Bytes(), nil
}

// oldRoot is one certificate of the current root-cert.pem, with the exact
// bytes old[start:end] of its PEM block (BEGIN line to END line and its line
// ending) and its position in the file.
type oldRoot struct {
	cert       *x509.Certificate
	index      int
	start, end int
}

// scanRoots parses b like root.ParseCertificates and records where each
// certificate's PEM block lies in b, so that the bytes can be kept as they are.
func scanRoots(b []byte) ([]oldRoot, error) {
	certs, err := root.ParseCertificates(b)
	if err != nil {
		return nil, err
	}
	out := make([]oldRoot, 0, len(certs))
	rest, prevEnd := b, 0
	for i, c := range certs {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("certificate %d: PEM block not found", i+1)
		}
		end := len(b) - len(rest)
		// A block's body cannot contain "-----BEGIN", so its own BEGIN line
		// is the last one before its end.
		start := bytes.LastIndex(b[prevEnd:end], []byte("-----BEGIN"))
		if start < 0 {
			return nil, fmt.Errorf("certificate %d: PEM block not found", i+1)
		}
		out = append(out, oldRoot{cert: c, index: i, start: prevEnd + start, end: end})
		prevEnd = end
	}
	return out, nil
}
