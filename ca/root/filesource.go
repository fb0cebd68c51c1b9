package root

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
)

// KeyLoader loads CA keys from meshca's key store; *keys.Manager
// implements it.
type KeyLoader interface {
	Signer(ref string) (crypto.Signer, error)
	LoadPQ(ref string) (keys.PQSigner, error)
}

// FileSource is a root whose certificate and keys meshca reads from files
// (root.file.rootCert, rootKey and, for a Catalyst root, rootPQKey): it
// mints intermediates locally with the root key and signs the root's CRL.
type FileSource struct {
	// RootCert is root-cert.pem: the first certificate is the signing
	// root; any others are additional trust anchors (during root rotation).
	RootCert string
	// RootKey and RootPQKey are the root's key references.
	RootKey, RootPQKey string
	// Profile is the CA profile (intermediate.profile) the root must suit.
	Profile profile.Name
	Keys    KeyLoader
	// Clock is the clock (default the real one).
	Clock clock.PassiveClock
}

func (f *FileSource) now() time.Time {
	if f.Clock != nil {
		return f.Clock.Now()
	}
	return time.Now()
}

// Kind implements Source.
func (f *FileSource) Kind() string { return KindFileMinted }

// Capabilities implements Source: it mints; meshca signs the root's CRL.
func (f *FileSource) Capabilities() Capabilities { return Capabilities{Mint: true} }

// Roots implements Source: the roots of RootCert, once the root key is
// checked against the signing root.
func (f *FileSource) Roots(context.Context) ([]*x509.Certificate, error) {
	roots, _, err := f.load()
	return roots, err
}

// SigningRoot implements RootKeyHolder.
func (f *FileSource) SigningRoot() (*x509.Certificate, CAKey, error) {
	roots, key, err := f.load()
	if err != nil {
		return nil, CAKey{}, err
	}
	return roots[0], key, nil
}

// CurrentCRL implements Source: meshca signs the root's CRL itself.
func (f *FileSource) CurrentCRL() *x509.RevocationList { return nil }

// Health implements Source: the root and its keys load and check now.
func (f *FileSource) Health() error {
	_, _, err := f.load()
	return err
}

// Run implements Source; a file root has no background work.
func (f *FileSource) Run(context.Context) {}

// MintIntermediate implements Source: the root key signs the request's
// keys as a pathlen-0 intermediate (Mint), after the CSR, when present,
// is checked.
func (f *FileSource) MintIntermediate(_ context.Context, req IntermediateRequest) (*Bundle, error) {
	if len(req.PublicKeyInfo) == 0 {
		return nil, fmt.Errorf("mint intermediate: the request carries no public key")
	}
	if _, err := req.CheckCSR(); err != nil {
		return nil, fmt.Errorf("mint intermediate: %w", err)
	}
	roots, key, err := f.load()
	if err != nil {
		return nil, err
	}
	now := req.Now
	if now.IsZero() {
		now = f.now()
	}
	cert, err := mintSPKI(roots[0], key, req.PublicKeyInfo, req.AltPublicKeyInfo, req.Template, now)
	if err != nil {
		return nil, err
	}
	return &Bundle{Cert: cert, Roots: roots}, nil
}

// load reads RootCert and the root's keys: the root key, and for a
// Catalyst root (one that carries 2.5.29.72) under the catalyst profile
// its ML-DSA key. The root must suit the profile: classical (or Catalyst)
// for classical and catalyst CAs, composite or ML-DSA for composite and
// mldsa CAs.
func (f *FileSource) load() ([]*x509.Certificate, CAKey, error) {
	roots, err := ReadCertificates(f.RootCert)
	if err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootCert %w", err)
	}
	if err := CheckSigningCA(roots[0]); err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if err := CheckValidAt(roots[0], f.now()); err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootCert %s: root %w", f.RootCert, err)
	}
	signer, err := f.Keys.Signer(f.RootKey)
	if err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootKey: %w", err)
	}
	if err := CheckKeyMatches(roots[0], signer); err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootKey %s: %w", f.RootKey, err)
	}
	key := CAKey{Signer: signer}
	if err := CheckKeyForProfile(key, f.Profile); err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if f.Profile != profile.Catalyst {
		return roots, key, nil
	}
	alt, err := AltPublicKeyInfo(roots[0])
	if err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if alt == nil {
		// A classical enterprise root: the PQ chain is anchored at meshca's
		// own intermediate key.
		return roots, key, nil
	}
	if f.RootPQKey == "" {
		return nil, CAKey{}, fmt.Errorf("root.file.rootCert %s carries an ML-DSA alternative public key (2.5.29.72); set root.file.rootPQKey to its private key", f.RootCert)
	}
	if key.Alt, err = f.Keys.LoadPQ(f.RootPQKey); err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootPQKey: %w", err)
	}
	if err := CheckAltKeyMatches(roots[0], key.Alt); err != nil {
		return nil, CAKey{}, fmt.Errorf("root.file.rootPQKey %s: %w", f.RootPQKey, err)
	}
	return roots, key, nil
}

// CACertsSource is a pre-issued intermediate given as Istio's cacerts
// files in Dir (root.file.cacertsDir). meshca signs with it but holds no
// root key, so it cannot mint a successor: MintIntermediate fails with a
// CannotMintError.
type CACertsSource struct {
	Dir     string
	Profile profile.Name
	Keys    KeyLoader
	// Clock is the clock (default the real one).
	Clock clock.PassiveClock
}

func (c *CACertsSource) now() time.Time {
	if c.Clock != nil {
		return c.Clock.Now()
	}
	return time.Now()
}

// Kind implements Source.
func (c *CACertsSource) Kind() string { return KindFileCACerts }

// Capabilities implements Source: it cannot mint, and the root's CRL comes
// from crl.rootCRL, if anywhere.
func (c *CACertsSource) Capabilities() Capabilities { return Capabilities{} }

// Roots implements Source: root-cert.pem, once the whole directory checks.
func (c *CACertsSource) Roots(context.Context) ([]*x509.Certificate, error) {
	p, err := c.PreIssued(c.now())
	if err != nil {
		return nil, err
	}
	return p.Bundle.Roots, nil
}

// MintIntermediate implements Source: it always fails with a
// CannotMintError.
func (c *CACertsSource) MintIntermediate(context.Context, IntermediateRequest) (*Bundle, error) {
	return nil, &CannotMintError{Kind: KindFileCACerts, Reason: fmt.Sprintf(
		"pre-issued intermediate (root.file.cacertsDir %s): meshca holds no root key; replace the files with a new intermediate, or configure root.file.rootCert and rootKey or root.source vault so that meshca mints its own", c.Dir)}
}

// CurrentCRL implements Source: none (see crl.rootCRL).
func (c *CACertsSource) CurrentCRL() *x509.RevocationList { return nil }

// Health implements Source: the files load and check now.
func (c *CACertsSource) Health() error {
	_, err := c.PreIssued(c.now())
	return err
}

// Run implements Source; the files have no background work.
func (c *CACertsSource) Run(context.Context) {}

// PreIssued implements PreIssuedSource: LoadCACertsDir, and the key must
// suit the profile.
func (c *CACertsSource) PreIssued(now time.Time) (*PreIssuedCA, error) {
	b, signer, err := LoadCACertsDir(c.Dir, c.Keys.Signer, now)
	if err != nil {
		return nil, fmt.Errorf("root.file.cacertsDir: %w", err)
	}
	if err := CheckKeyForProfile(CAKey{Signer: signer}, c.Profile); err != nil {
		return nil, fmt.Errorf("root.file.cacertsDir %s: %s: %w", c.Dir, CACertFile, err)
	}
	return &PreIssuedCA{Bundle: b, Key: signer, KeyRef: filepath.Join(c.Dir, CAKeyFile), AltKeyRef: filepath.Join(c.Dir, CAPQKeyFile)}, nil
}

// CheckKeyForProfile checks that a root (or pre-issued intermediate) key
// can anchor a CA of profile p.
func CheckKeyForProfile(key CAKey, p profile.Name) error {
	got := KeyName(key.Signer.Public())
	_, isPQ := key.Signer.(keys.PQSigner)
	switch p {
	case profile.Classical, profile.Catalyst:
		if isPQ {
			return fmt.Errorf("is a %s root; intermediate.profile %s needs a classical root (Envoy verifies that chain); use intermediate.profile composite or mldsa with this root", got, p)
		}
	case profile.Composite, profile.MLDSA:
		want := profile.Composite
		if strings.HasPrefix(got, "ML-DSA-") {
			want = profile.MLDSA
		} else if !isPQ {
			want = ""
		}
		if want != p {
			return fmt.Errorf("has a %s key; intermediate.profile %s needs a %s root (meshca init --profile %s creates one), because a chain that Go and Envoy cannot verify must be post-quantum from its anchor", got, p, p, p)
		}
	}
	return nil
}

// KeyName names a public key's algorithm (EC-P256, ML-DSA-65, ...).
func KeyName(pub any) string {
	if n := keys.PQAlgorithmOf(pub); n != "" {
		return n
	}
	if n := keys.AlgorithmOf(pub); n != "" {
		return string(n)
	}
	return fmt.Sprintf("%T", pub)
}
