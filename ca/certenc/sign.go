package certenc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"

	"github.com/meshca/meshca/ca/oid"
)

// AlgorithmSigner is an issuer key that is not classical: ML-DSA
// (RFC 9881) or composite ML-DSA. It names its own X.509 signature
// AlgorithmIdentifier and signs the whole message itself: certenc calls
// Sign (or SignMessage, for a crypto.MessageSigner) with the full DER
// message and crypto.Hash(0). Hedging and contexts are the signer's
// business; RFC 9881 asks for an empty context. ca/pqc's mldsa and
// composite private keys implement it.
//
// When the signer's public key has a method
// Verify(message, signature []byte) error (ca/pqc's do), certenc checks
// every signature the signer returns, in both [VerifyMode]s (see
// [VerifyAuto] for why).
type AlgorithmSigner interface {
	crypto.Signer
	SignatureAlgorithm() pkix.AlgorithmIdentifier
}

// messageVerifier is the optional self-check of an AlgorithmSigner's
// public key.
type messageVerifier interface {
	Verify(message, signature []byte) error
}

// VerifyMode says which fresh signatures certenc checks against the
// issuer's public key before it returns a certificate. It is an [Option]
// of [Build], [BuildCatalyst] and [Sign].
type VerifyMode int

const (
	// VerifyAuto (the default) checks every signature except those of an
	// in-process software ECDSA or Ed25519 key (*ecdsa.PrivateKey,
	// ed25519.PrivateKey). The check exists for faults that leak the key
	// or ship a certificate nobody can verify:
	//
	//   - RSA with the Chinese Remainder Theorem: one faulty signature
	//     factors the modulus (Boneh, DeMillo and Lipton, "On the
	//     Importance of Checking Cryptographic Protocols for Faults",
	//     EUROCRYPT 1997); so RSA is always checked;
	//   - any signer that is not Go code on a key in this process (a
	//     PKCS#11 token or HSM, a KMS or Vault, any wrapper crypto.Signer):
	//     certenc cannot see what it ran, so its output is always checked;
	//   - ML-DSA and composite ML-DSA ([AlgorithmSigner]) are always
	//     checked: fault attacks on lattice signing are an active field
	//     (e.g. Bruinderink and Pessl, "Differential Fault Attacks on
	//     Deterministic Lattice Signatures", TCHES 2018; Ravi et al.,
	//     "Number Not Used Once", TCHES 2019), the implementations are
	//     young, and the check costs a fraction of the signing (ML-DSA
	//     signing loops on rejection; verification does not).
	//
	// Go's ECDSA and Ed25519 signers on an in-process key are constant-
	// time, hedged (ECDSA) or deterministic (Ed25519) code from the
	// standard library; re-verifying their output costs more than the
	// signature itself (ECDSA verification is two scalar multiplications)
	// and protects against hardware faults only.
	VerifyAuto VerifyMode = iota
	// VerifyAlways checks every signature whose public key can verify, as
	// x509.CreateCertificate does.
	VerifyAlways
)

// String is the configuration spelling: auto or always.
func (m VerifyMode) String() string {
	switch m {
	case VerifyAuto:
		return "auto"
	case VerifyAlways:
		return "always"
	}
	return fmt.Sprintf("VerifyMode(%d)", int(m))
}

// Option tunes [Build], [BuildCatalyst] and [Sign].
type Option interface{ apply(*options) }

type options struct{ verify VerifyMode }

func (m VerifyMode) apply(o *options) { o.verify = m }

func collect(opts []Option) options {
	var o options
	for _, op := range opts {
		if op != nil {
			op.apply(&o)
		}
	}
	return o
}

// inProcessEC reports whether key is a software ECDSA or Ed25519 key held
// in this process: Go's own signing code, which [VerifyAuto] trusts.
// Wrappers and hardware signers are other types and stay checked.
func inProcessEC(key crypto.Signer) bool {
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *ed25519.PrivateKey:
		return true
	}
	return false
}

// verified, when set by a test, is called for every signature certenc
// checks.
var verified func()

// Signer is an issuer key resolved for signing any DER message with the
// profile certenc uses for that key: the certificate encoders use it for
// TBSCertificates and preTBSCertificates, and other encoders (the CRL
// builder of crl/) for theirs, so that every signature meshca makes goes
// through one implementation, including the self-check of [VerifyMode].
// A Signer is safe for concurrent use when its key is.
type Signer struct {
	key  crypto.Signer
	alg  []byte      // DER AlgorithmIdentifier; shared, never written
	hash crypto.Hash // 0: the signer takes the whole message
	// verify checks a fresh signature over msg; nil when the
	// [VerifyMode] skips the check or an AlgorithmSigner's public key
	// cannot verify.
	verify func(msg, sig []byte) error
}

// NewSigner resolves key: its AlgorithmIdentifier is the one
// [SignatureAlgorithmOf] names (sha256WithRSAEncryption, ecdsa-with-SHA256/
// 384/512, Ed25519, or an [AlgorithmSigner]'s own: ML-DSA of RFC 9881,
// composite ML-DSA of draft-ietf-lamps-pq-composite-sigs-19). Its only
// option is the [VerifyMode] (default [VerifyAuto]).
func NewSigner(key crypto.Signer, opts ...Option) (*Signer, error) {
	return resolveSigner(key, collect(opts))
}

// Algorithm returns the DER AlgorithmIdentifier of the signatures, for
// the signature fields of the message and of its envelope. The caller
// owns the returned slice.
func (s *Signer) Algorithm() []byte { return bytes.Clone(s.alg) }

// Public is the public key of the signer.
func (s *Signer) Public() crypto.PublicKey { return s.key.Public() }

// Sign signs the DER message msg (hashing it first for the classical
// algorithms) and returns the raw signature, the content of the
// signatureValue BIT STRING. As for certificates, the signature is checked
// against the public key when the [VerifyMode] asks for it and the key
// can verify; a signature that does not verify is an error.
func (s *Signer) Sign(rand io.Reader, msg []byte) ([]byte, error) { return s.sign(rand, msg) }

// rsaAlgorithm is sha256WithRSAEncryption with its NULL parameters.
var rsaAlgorithm = pkix.AlgorithmIdentifier{
	Algorithm:  oid.SHA256WithRSA,
	Parameters: asn1.NullRawValue,
}

// SignatureAlgorithmOf returns the signature AlgorithmIdentifier certenc
// uses for key: the signer's own for an [AlgorithmSigner]; otherwise
// sha256WithRSAEncryption for RSA, ecdsa-with-SHA256/384/512 for
// P-256/P-384/P-521 and Ed25519 for Ed25519, as x509.CreateCertificate
// chooses by default.
func SignatureAlgorithmOf(key crypto.Signer) (pkix.AlgorithmIdentifier, error) {
	if key == nil {
		return pkix.AlgorithmIdentifier{}, errors.New("certenc: no signer")
	}
	if as, ok := key.(AlgorithmSigner); ok {
		return as.SignatureAlgorithm(), nil
	}
	ai, _, _, err := classicalAlgorithm(key.Public())
	return ai, err
}

func classicalAlgorithm(pub crypto.PublicKey) (pkix.AlgorithmIdentifier, crypto.Hash, func(msg, sig []byte) error, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		return rsaAlgorithm, crypto.SHA256, func(msg, sig []byte) error {
			d := sha256.Sum256(msg)
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
		}, nil
	case *ecdsa.PublicKey:
		var alg asn1.ObjectIdentifier
		var h crypto.Hash
		switch pub.Curve {
		case elliptic.P256():
			alg, h = oid.ECDSAWithSHA256, crypto.SHA256
		case elliptic.P384():
			alg, h = oid.ECDSAWithSHA384, crypto.SHA384
		case elliptic.P521():
			alg, h = oid.ECDSAWithSHA512, crypto.SHA512
		default:
			return pkix.AlgorithmIdentifier{}, 0, nil, fmt.Errorf("certenc: unsupported ECDSA curve %s", pub.Curve.Params().Name)
		}
		return pkix.AlgorithmIdentifier{Algorithm: alg}, h, func(msg, sig []byte) error {
			hh := h.New()
			hh.Write(msg)
			if !ecdsa.VerifyASN1(pub, hh.Sum(nil), sig) {
				return errors.New("ECDSA verification failure")
			}
			return nil
		}, nil
	case ed25519.PublicKey:
		return pkix.AlgorithmIdentifier{Algorithm: oid.Ed25519}, 0, func(msg, sig []byte) error {
			if !ed25519.Verify(pub, msg, sig) {
				return errors.New("Ed25519 verification failure")
			}
			return nil
		}, nil
	default:
		return pkix.AlgorithmIdentifier{}, 0, nil, fmt.Errorf("certenc: unsupported issuer key %T: not RSA, ECDSA or Ed25519, and no SignatureAlgorithm method", pub)
	}
}

// classicalDER holds the DER AlgorithmIdentifiers of the classical
// algorithms, encoded once and shared read-only (full slice expressions:
// an append never writes into them).
var classicalDER = func() []struct {
	oid asn1.ObjectIdentifier
	der []byte
} {
	var t []struct {
		oid asn1.ObjectIdentifier
		der []byte
	}
	for _, ai := range []pkix.AlgorithmIdentifier{
		rsaAlgorithm, {Algorithm: oid.ECDSAWithSHA256}, {Algorithm: oid.ECDSAWithSHA384},
		{Algorithm: oid.ECDSAWithSHA512}, {Algorithm: oid.Ed25519},
	} {
		der, err := marshalAlgorithm(ai)
		if err != nil {
			panic(err)
		}
		t = append(t, struct {
			oid asn1.ObjectIdentifier
			der []byte
		}{ai.Algorithm, der[:len(der):len(der)]})
	}
	return t
}()

// classicalAlgorithmDER is marshalAlgorithm for what classicalAlgorithm
// returns, from the table.
func classicalAlgorithmDER(ai pkix.AlgorithmIdentifier) ([]byte, error) {
	for _, e := range classicalDER {
		if e.oid.Equal(ai.Algorithm) {
			return e.der, nil
		}
	}
	return marshalAlgorithm(ai)
}

func resolveSigner(key crypto.Signer, o options) (*Signer, error) {
	if key == nil {
		return nil, errors.New("certenc: no issuer signer")
	}
	s := &Signer{key: key}
	var ai pkix.AlgorithmIdentifier
	var err error
	if as, ok := key.(AlgorithmSigner); ok {
		ai = as.SignatureAlgorithm()
		if v, ok := key.Public().(messageVerifier); ok {
			s.verify = v.Verify
		}
		if s.alg, err = marshalAlgorithm(ai); err != nil {
			return nil, err
		}
	} else {
		if ai, s.hash, s.verify, err = classicalAlgorithm(key.Public()); err != nil {
			return nil, err
		}
		if s.alg, err = classicalAlgorithmDER(ai); err != nil {
			return nil, err
		}
	}
	if o.verify == VerifyAuto && inProcessEC(key) {
		s.verify = nil
	}
	return s, nil
}

// sign signs msg (a TBS, preTBS or any other DER message) and checks the signature against the
// public key when the [VerifyMode] asks for it and the key can.
func (s *Signer) sign(rand io.Reader, msg []byte) ([]byte, error) {
	sig, err := crypto.SignMessage(s.key, rand, msg, s.hash)
	if err != nil {
		return nil, fmt.Errorf("certenc: sign: %w", err)
	}
	if len(sig) == 0 {
		return nil, errors.New("certenc: signer returned an empty signature")
	}
	if s.verify != nil {
		if verified != nil {
			verified()
		}
		if err := s.verify(msg, sig); err != nil {
			return nil, fmt.Errorf("certenc: signature returned by signer is invalid: %w", err)
		}
	}
	return sig, nil
}

// Sign signs a DER TBSCertificate with key and returns the DER
// certificate. The TBS's signature field must already name the algorithm
// [SignatureAlgorithmOf] picks for key; a mismatch is an error, since the
// certificate would not verify.
func Sign(tbs []byte, key crypto.Signer, rand io.Reader, opts ...Option) ([]byte, error) {
	s, err := resolveSigner(key, collect(opts))
	if err != nil {
		return nil, err
	}
	f, err := ParseTBS(tbs)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(f.Elements[f.SignatureIndex], s.alg) {
		return nil, errors.New("certenc: TBSCertificate signature algorithm does not match the signer's")
	}
	sig, err := s.sign(rand, tbs)
	if err != nil {
		return nil, err
	}
	return marshalCertificate(tbs, s.alg, sig)
}

// Build encodes t and signs it with issuer in one pass: classical
// (RSA/ECDSA/Ed25519) or, for an [AlgorithmSigner], pure ML-DSA or
// composite. It returns the DER certificate.
func Build(t *Template, issuer crypto.Signer, rand io.Reader, opts ...Option) ([]byte, error) {
	s, err := resolveSigner(issuer, collect(opts))
	if err != nil {
		return nil, err
	}
	if err := checkRequested(t, s.alg); err != nil {
		return nil, err
	}
	p, err := t.encode()
	if err != nil {
		return nil, err
	}
	tbs, err := p.tbs(s.alg, p.exts)
	if err != nil {
		return nil, err
	}
	sig, err := s.sign(rand, tbs)
	if err != nil {
		return nil, err
	}
	return marshalCertificate(tbs, s.alg, sig)
}

// Catalyst holds the alternative-signature inputs of [BuildCatalyst].
type Catalyst struct {
	// Issuer is the issuer's alternative (ML-DSA) key. It signs the
	// preTBSCertificate; its SignatureAlgorithm becomes
	// altSignatureAlgorithm (2.5.29.73).
	Issuer AlgorithmSigner

	// SubjectPublicKey is the subject's alternative SubjectPublicKeyInfo
	// in DER, written as subjectAltPublicKeyInfo (2.5.29.72). meshca sets
	// it on CA certificates only, so that their subordinates' alternative
	// signatures can be checked; leave it empty for leaves. For a
	// self-signed root it is the public half of Issuer.
	SubjectPublicKey []byte
}

// BuildCatalyst builds a Catalyst hybrid certificate in one pass: it
// encodes t with 2.5.29.72 (when alt.SubjectPublicKey is set) and
// 2.5.29.73 appended after the template's extensions, signs that
// preTBSCertificate with alt.Issuer, appends 2.5.29.74 altSignatureValue,
// and signs the full TBS once with the classical issuer. All three
// extensions are non-critical.
func BuildCatalyst(t *Template, issuer crypto.Signer, alt Catalyst, rand io.Reader, opts ...Option) ([]byte, error) {
	if _, ok := issuer.(AlgorithmSigner); ok {
		return nil, errors.New("certenc: Catalyst needs a classical primary issuer key")
	}
	if alt.Issuer == nil {
		return nil, errors.New("certenc: Catalyst needs an alternative issuer key")
	}
	o := collect(opts)
	s, err := resolveSigner(issuer, o)
	if err != nil {
		return nil, err
	}
	as, err := resolveSigner(alt.Issuer, o)
	if err != nil {
		return nil, err
	}
	if err := checkRequested(t, s.alg); err != nil {
		return nil, err
	}
	p, err := t.encode()
	if err != nil {
		return nil, err
	}
	for _, oid := range []asn1.ObjectIdentifier{oid.SubjectAltPublicKeyInfo, oid.AltSignatureAlgorithm, oid.AltSignatureValue} {
		if hasExtension(p.exts, oid) {
			return nil, fmt.Errorf("certenc: template already carries Catalyst extension %v", oid)
		}
	}

	exts := make([]pkix.Extension, 0, len(p.exts)+3)
	exts = append(exts, p.exts...)
	if len(alt.SubjectPublicKey) > 0 {
		if _, err := spkiKeyBits(alt.SubjectPublicKey); err != nil {
			return nil, fmt.Errorf("certenc: subject alternative public key: %w", err)
		}
		exts = append(exts, pkix.Extension{Id: oid.SubjectAltPublicKeyInfo, Value: alt.SubjectPublicKey})
	}
	exts = append(exts, pkix.Extension{Id: oid.AltSignatureAlgorithm, Value: as.alg})

	pre, err := p.tbs(nil, exts)
	if err != nil {
		return nil, err
	}
	altSig, err := as.sign(rand, pre)
	if err != nil {
		return nil, fmt.Errorf("certenc: alternative signature: %w", err)
	}
	vb := cryptobyte.NewBuilder(make([]byte, 0, len(altSig)+8))
	addBitString(vb, altSig) // altSignatureValue ::= BIT STRING, whole octets
	value, err := vb.Bytes()
	if err != nil {
		return nil, fmt.Errorf("certenc: encode altSignatureValue: %w", err)
	}
	exts = append(exts, pkix.Extension{Id: oid.AltSignatureValue, Value: value})

	tbs, err := p.tbs(s.alg, exts)
	if err != nil {
		return nil, err
	}
	// What was alt-signed must be what verifiers will recompute.
	if check, err := preTBS(tbs); err != nil || !bytes.Equal(check, pre) {
		return nil, fmt.Errorf("certenc: internal error: preTBSCertificate does not round-trip (%v)", err)
	}
	sig, err := s.sign(rand, tbs)
	if err != nil {
		return nil, err
	}
	return marshalCertificate(tbs, s.alg, sig)
}

// SubjectKeyID computes a key identifier from a DER SubjectPublicKeyInfo
// the way Go 1.26's x509.CreateCertificate does for CA certificates
// (RFC 7093 section 2 method 1: the leftmost 160 bits of the SHA-256 of
// the subjectPublicKey bits). It works for any key algorithm.
func SubjectKeyID(spki []byte) ([]byte, error) {
	key, err := spkiKeyBits(spki)
	if err != nil {
		return nil, fmt.Errorf("certenc: %w", err)
	}
	h := sha256.Sum256(key)
	return h[:20], nil
}

// requestedAlgorithms maps the x509.SignatureAlgorithm values a template
// may name to the algorithm OIDs certenc signs with.
var requestedAlgorithms = func() map[x509.SignatureAlgorithm]asn1.ObjectIdentifier {
	m := make(map[x509.SignatureAlgorithm]asn1.ObjectIdentifier, len(oid.ClassicalSignatures))
	for _, s := range oid.ClassicalSignatures {
		m[s.Algorithm] = s.OID
	}
	return m
}()

// checkRequested rejects a template whose SignatureAlgorithm names
// something other than what the issuer key signs with: certenc picks the
// algorithm from the key and never silently overrides the template.
func checkRequested(t *Template, alg []byte) error {
	if t == nil || t.Certificate == nil || t.Certificate.SignatureAlgorithm == x509.UnknownSignatureAlgorithm {
		return nil
	}
	req := t.Certificate.SignatureAlgorithm
	want, ok := requestedAlgorithms[req]
	if !ok {
		return fmt.Errorf("certenc: template SignatureAlgorithm %v is not supported", req)
	}
	var ai pkix.AlgorithmIdentifier
	if _, err := asn1.Unmarshal(alg, &ai); err != nil || !ai.Algorithm.Equal(want) {
		return fmt.Errorf("certenc: template SignatureAlgorithm %v does not match the issuer key", req)
	}
	return nil
}
