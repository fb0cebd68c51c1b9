package root

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// Kinds of root source, as recorded with every CA generation in the store
// (store.Generation.Source).
const (
	// KindFileMinted: meshca holds the root key and mints its intermediate.
	KindFileMinted = "file-minted"
	// KindFileCACerts: a pre-issued intermediate from Istio's cacerts files.
	KindFileCACerts = "file-cacerts"
	// KindVault: a Vault PKI mount signs meshca's intermediate.
	KindVault = "vault"
)

// Source is where meshca's intermediates come from: the enterprise root.
// Whoever mints, rotates or publishes asks the Source, never which kind it
// is. Implementations: FileSource (root certificate and key in files),
// CACertsSource (a pre-issued intermediate, which cannot mint) and
// ca/root/vault.Source (a Vault PKI mount). A Source is safe for
// concurrent use.
type Source interface {
	// Kind is the generation source recorded for the intermediates it
	// yields: KindFileMinted, KindFileCACerts or KindVault.
	Kind() string
	// Capabilities says what the source can do.
	Capabilities() Capabilities
	// Roots returns the trust anchors, checked; the first is the root new
	// intermediates chain to. Errors caused by an outage match
	// ErrUnavailable.
	Roots(ctx context.Context) ([]*x509.Certificate, error)
	// MintIntermediate has the root sign a new pathlen-0 intermediate for
	// the keys in req and returns it with its chain and the roots. Only
	// public keys and a CSR reach the source: the intermediate's private
	// key stays in meshca's key store. A source that cannot mint returns
	// an error matching ErrCannotMint; an outage matches ErrUnavailable.
	MintIntermediate(ctx context.Context, req IntermediateRequest) (*Bundle, error)
	// CurrentCRL returns the root's CRL as last fetched, without I/O; nil
	// while none is held or when the source supplies none
	// (Capabilities.RootCRL false).
	CurrentCRL() *x509.RevocationList
	// Health returns nil when the source can serve Roots and
	// MintIntermediate now, and otherwise why not.
	Health() error
	// Run runs the source's background work (health checks, token renewal,
	// CRL refresh) until ctx ends; it returns at once for sources that have
	// none.
	Run(ctx context.Context)
}

// Capabilities says what a Source can do.
type Capabilities struct {
	// Mint is false for a pre-issued intermediate: MintIntermediate fails
	// with ErrCannotMint, and that intermediate cannot be rotated by meshca.
	Mint bool
	// RootCRL: the source supplies the root's CRL through CurrentCRL (Vault).
	// False when meshca signs the root's CRL with the root key it holds
	// (RootKeyHolder) or takes it from elsewhere (crl.rootCRL).
	RootCRL bool
}

// CRLSet is implemented by a Source over more than one root source (a
// root rotation): while two roots are in force, certificates under each
// are in use, and a relying party that checks revocation along the whole
// chain needs a CRL from each root, not only from the one that mints.
type CRLSet interface {
	// CurrentCRLs returns, without I/O, an entry for each root source in
	// force that supplies its root's CRL (Capabilities.RootCRL): the
	// minting source's marked Minting, then the other's. An entry's CRL
	// is nil while none is held (its source not reached since meshca
	// started). Empty when no source supplies one (meshca signs the roots'
	// CRLs itself).
	CurrentCRLs() []HeldCRL
}

// HeldCRL is a root's CRL a CRLSet holds.
type HeldCRL struct {
	// CRL is nil while none is held.
	CRL *x509.RevocationList
	// Minting: the CRL of the root new intermediates are minted under
	// (the one CurrentCRL returns).
	Minting bool
	// Root is the root the CRL is of, when known (to name a missing CRL).
	Root *x509.Certificate
}

// RootKeyHolder is implemented by sources whose root key meshca holds
// (FileSource): meshca signs the root's CRL with it (RFC 5280 section 5).
type RootKeyHolder interface {
	// SigningRoot returns the signing root and its keys, checked.
	SigningRoot() (*x509.Certificate, CAKey, error)
}

// PreIssuedCA is a pre-issued intermediate that meshca signs with but did
// not mint.
type PreIssuedCA struct {
	Bundle *Bundle
	Key    crypto.Signer
	// KeyRef is the key's reference in the key store (its file).
	KeyRef string
	// AltKeyRef is where the ML-DSA private key of a certificate carrying
	// an alternative public key (2.5.29.72) is expected.
	AltKeyRef string
}

// PreIssuedSource is implemented by sources that hold one pre-issued
// intermediate instead of minting (CACertsSource).
type PreIssuedSource interface {
	Source
	// PreIssued loads the intermediate and checks it at now.
	PreIssued(now time.Time) (*PreIssuedCA, error)
}

// ErrUnavailable is matched (errors.Is) by every error caused by the root
// source being unreachable or not serving (a Vault outage). meshca keeps
// signing with the intermediate it holds meanwhile.
var ErrUnavailable = errors.New("root source unavailable")

// ErrCannotMint is matched by the error of MintIntermediate on a source
// that cannot mint (see CannotMintError).
var ErrCannotMint = errors.New("root source cannot mint intermediates")

// CannotMintError says why a source cannot mint an intermediate.
type CannotMintError struct {
	// Kind is the source's kind.
	Kind string
	// Reason is the human explanation, e.g. "pre-issued intermediate".
	Reason string
}

func (e *CannotMintError) Error() string {
	return fmt.Sprintf("cannot mint an intermediate: %s", e.Reason)
}

// Is makes errors.Is(err, ErrCannotMint) true.
func (e *CannotMintError) Is(target error) bool { return target == ErrCannotMint }

// IntermediateRequest asks a root source for a new intermediate.
type IntermediateRequest struct {
	// CSR is a DER PKCS#10 request (RFC 2986) for the intermediate's key,
	// signed by it (proof of possession) with subject CN and O of Template.
	// It is present when that key is classical; a source that signs
	// remotely (Vault) sends only the CSR.
	CSR []byte
	// PublicKeyInfo is the DER SubjectPublicKeyInfo of the intermediate's
	// key (classical, ML-DSA or composite).
	PublicKeyInfo []byte
	// AltPublicKeyInfo is a catalyst intermediate's ML-DSA key, which the
	// certificate carries as subjectAltPublicKeyInfo (X.509 clause 9.8,
	// 2.5.29.72); nil otherwise.
	AltPublicKeyInfo []byte
	Template         IntermediateTemplate
	// Now is when the intermediate's validity starts (less the backdate)
	// for sources that sign locally; remote sources use their own clock.
	Now time.Time
}

// NewIntermediateRequest describes key (the public halves only) for a new
// intermediate shaped by t, with a CSR when key.Signer can sign one.
func NewIntermediateRequest(key CAKey, t IntermediateTemplate, now time.Time) (IntermediateRequest, error) {
	spki, alt, err := key.spkis()
	if err != nil {
		return IntermediateRequest{}, fmt.Errorf("intermediate key: %w", err)
	}
	req := IntermediateRequest{PublicKeyInfo: spki, AltPublicKeyInfo: alt, Template: t, Now: now}
	switch key.Signer.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		subject := pkix.Name{CommonName: t.CommonName}
		if t.Organization != "" {
			subject.Organization = []string{t.Organization}
		}
		// No extensions are requested: a remote CA (Vault's use_csr_values)
		// would copy them into the certificate.
		if req.CSR, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key.Signer); err != nil {
			return IntermediateRequest{}, fmt.Errorf("create intermediate CSR: %w", err)
		}
	}
	return req, nil
}

// CheckCSR checks req.CSR, when present: it parses, its signature verifies
// (proof of possession) and its key is req.PublicKeyInfo.
func (req IntermediateRequest) CheckCSR() (*x509.CertificateRequest, error) {
	if len(req.CSR) == 0 {
		return nil, nil
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("the intermediate CSR does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the intermediate CSR's signature is invalid: %w", err)
	}
	if len(req.PublicKeyInfo) > 0 && string(csr.RawSubjectPublicKeyInfo) != string(req.PublicKeyInfo) {
		return nil, errors.New("the intermediate CSR is for another key than the request's")
	}
	return csr, nil
}
