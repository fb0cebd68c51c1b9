package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"go.step.sm/crypto/pemutil"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/issuer/admin"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// maxKeyFileBytes bounds the key file the CLI reads (an RSA-8192 PKCS#8 PEM
// is under 7 KiB).
const maxKeyFileBytes = 64 << 10

// liveCACerts is the cacerts folder of a running meshca serve: the public
// files from its admin socket, and ca-key.pem read here, from the key file
// the server names, with this process's own permissions. The key never
// crosses the socket. The server is not trusted with the choice of file:
// the key must lie, symlinks resolved, inside a key directory of cfg
// (keyStore.dir, root.file.cacertsDir), and it must match ca-cert.pem.
func liveCACerts(ctx context.Context, cfg *config.Config, c *admin.Client, withCRL bool) (files map[string][]byte, gen uint64, err error) {
	cc, err := c.CACerts(ctx, withCRL)
	if err != nil {
		return nil, 0, fmt.Errorf("meshca serve holds the store; asking it for the cacerts files: %w", err)
	}
	files = map[string][]byte{}
	for _, n := range []string{cacerts.KeyCACert, cacerts.KeyCertChain, cacerts.KeyRootCert} {
		if cc.Files[n] == "" {
			return nil, 0, fmt.Errorf("meshca serve sent no %s", n)
		}
	}
	for n, b := range cc.Files {
		switch n {
		case cacerts.KeyCACert, cacerts.KeyCertChain, cacerts.KeyRootCert:
		case cacerts.KeyCRL:
			if !withCRL {
				continue
			}
		default:
			return nil, 0, fmt.Errorf("meshca serve sent an unexpected file %q", n)
		}
		files[n] = []byte(b)
	}
	// The files are checked as a pre-issued cacerts folder is (a signing
	// CA, valid now, verifying to root-cert.pem through cert-chain.pem), so
	// that what istiod is given is a chain it can use.
	b, err := root.CACertsBundle(files, func(n string) string { return "meshca serve's " + n }, clock.RealClock{}.Now())
	if err != nil {
		return nil, 0, fmt.Errorf("refusing the cacerts files of generation %d: %w", cc.Generation, err)
	}
	notExportable := fmt.Errorf("the intermediate key of generation %d cannot be exported (it lives in a key manager); Istio's plug-in mode needs the key in ca-key.pem", cc.Generation)
	path, ok := keys.FilePath(cc.KeyRef)
	if !ok || !classicalPublic(b.Cert) {
		// A PKCS#11 or KMS key, or an ML-DSA or composite one.
		return nil, 0, notExportable
	}
	key, err := readKeyInside(path, keyDirs(cfg))
	if err != nil {
		return nil, 0, err
	}
	if !exportable(key) {
		return nil, 0, fmt.Errorf("key file %s holds no private key for ca-key.pem", path)
	}
	if err := root.CheckKeyMatches(b.Cert, key.(crypto.Signer)); err != nil {
		return nil, 0, fmt.Errorf("key file %s of generation %d does not match its %s: %w", path, cc.Generation, cacerts.KeyCACert, err)
	}
	if files[cacerts.KeyCAKey], err = cacerts.KeyPEM(key); err != nil {
		return nil, 0, err
	}
	return files, cc.Generation, nil
}

// keyDirs are the directories that cfg keeps intermediate keys in: the key
// store and a pre-issued intermediate's folder.
func keyDirs(cfg *config.Config) []string {
	var dirs []string
	for _, d := range []string{cfg.KeyStore.Dir, cfg.Root.File.CACertsDir} {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// readKeyInside reads the private key in the file path, which must lie
// inside one of dirs once every symbolic link is resolved. It opens the
// file through os.Root, so that no link swapped in meanwhile leads it out.
func readKeyInside(path string, dirs []string) (crypto.PrivateKey, error) {
	outside := fmt.Errorf("meshca serve names the key file %s, which is not inside this configuration's key directories %v; refusing to read it (is --dir or --config the directory that meshca serve runs on?)", path, dirs)
	if !filepath.IsAbs(path) {
		return nil, outside
	}
	// Each directory as configured and with its links resolved.
	var abs, real []string
	for _, d := range dirs {
		a, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			abs, real = append(abs, a, r), append(real, r)
		}
	}
	// Nothing outside them is even looked at, so that a server cannot
	// probe which files exist.
	if _, ok := within(abs, filepath.Clean(path)); !ok {
		return nil, outside
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	i, ok := within(real, resolved)
	if !ok {
		return nil, outside
	}
	// Other users must not read it, as the service demands.
	if err := keys.CheckKeyFile(resolved); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(real[i])
	if err != nil {
		return nil, fmt.Errorf("key directory %s: %w", real[i], err)
	}
	defer r.Close()
	rel, _ := filepath.Rel(real[i], resolved)
	return readKeyFile(r, rel, path)
}

// within returns the index of the directory in dirs that holds p.
func within(dirs []string, p string) (int, bool) {
	for i, d := range dirs {
		if rel, err := filepath.Rel(d, p); err == nil && filepath.IsLocal(rel) {
			return i, true
		}
	}
	return 0, false
}

func readKeyFile(r *os.Root, rel, path string) (crypto.PrivateKey, error) {
	f, err := r.Open(rel)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("key file %s: %w: run cacerts as the user that runs meshca serve", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("key file %s is larger than %d bytes: not a CA key", path, maxKeyFileBytes)
	}
	key, err := pemutil.ParseKey(b)
	if err != nil {
		// Do not wrap: some parsers echo input bytes in their errors.
		return nil, fmt.Errorf("key file %s is not a readable unencrypted PEM private key", path)
	}
	return key, nil
}

// classicalPublic reports whether the certificate's key is one whose
// private half can go into ca-key.pem (x509 parses no ML-DSA or composite
// key).
func classicalPublic(c *x509.Certificate) bool {
	switch c.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}
