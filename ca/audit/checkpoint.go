package audit

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/verify"
)

// A checkpoint is a record signed by meshca's active intermediate:
//
//	{"seq":N,"prev":"<hex>","kind":"checkpoint","time":"<RFC 3339>","reason":"interval",
//	 "alg":"<base64 DER AlgorithmIdentifier>","sig":"<base64>","chain":["<base64 DER>",...]}
//
// The signature is over CheckpointMessage(seq, prev, time, reason): the
// chain hash up to it, its place in the chain, when, and whether it is
// final. A Catalyst intermediate adds alt_alg and alt_sig, the same
// message signed with its ML-DSA key (the certificate's 2.5.29.72). It is
// made by the same code that signs meshca's certificates and
// CRLs (ca/certenc, with the signature checked against the public key):
// sha256WithRSAEncryption, ecdsa-with-SHA256/384/512 (by curve) or
// Ed25519 (RFC 5758, RFC 8410), or pure or composite ML-DSA (RFC 9881,
// draft-ietf-lamps-pq-composite-sigs) for a post-quantum intermediate.
// chain is the signing certificate first, then its intermediates, so that
// a verifier checks the key against a root it trusts: without that, a
// forger who rewrites the file could sign with a key of their own.

// CheckpointKey is the key that signs checkpoints and its certificate
// chain (the signing certificate first).
type CheckpointKey struct {
	Signer crypto.Signer
	// Alt is a Catalyst intermediate's ML-DSA key (its certificate's
	// 2.5.29.72): it adds an alternative signature over the same message,
	// so that a checkpoint stays unforgeable when the classical one no
	// longer is. Nil for the other profiles.
	Alt   certenc.AlgorithmSigner
	Chain []*x509.Certificate
}

// KeySource returns the current signing key (the active intermediate,
// which rotates).
type KeySource func() (CheckpointKey, error)

// CheckpointMessage is the exact byte string a checkpoint signs.
func CheckpointMessage(seq uint64, prev, t, reason string) []byte {
	b := make([]byte, 0, 160)
	b = append(b, "meshca audit checkpoint v1\nseq="...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\nprev="...)
	b = append(b, prev...)
	b = append(b, "\ntime="...)
	b = append(b, t...)
	b = append(b, "\nreason="...)
	b = append(b, reason...)
	return append(b, '\n')
}

// appendCheckpoint appends a signed checkpoint record (without "\n").
func appendCheckpoint(b []byte, key CheckpointKey, seq uint64, prev *[sha256.Size]byte, now time.Time, reason string) ([]byte, error) {
	if key.Signer == nil || len(key.Chain) == 0 {
		return b, errors.New("no checkpoint key")
	}
	s, err := certenc.NewSigner(key.Signer, certenc.VerifyAlways)
	if err != nil {
		return b, err
	}
	ts := now.UTC().Format(time.RFC3339Nano)
	var ph [2 * sha256.Size]byte
	hexEncode(ph[:], prev[:])
	msg := CheckpointMessage(seq, string(ph[:]), ts, reason)
	sig, err := s.Sign(rand.Reader, msg)
	if err != nil {
		return b, err
	}
	var alt *certenc.Signer
	var altSig []byte
	if key.Alt != nil {
		if alt, err = certenc.NewSigner(key.Alt, certenc.VerifyAlways); err != nil {
			return b, err
		}
		if altSig, err = alt.Sign(rand.Reader, msg); err != nil {
			return b, err
		}
	}
	b = appendHead(b, seq, prev, KindCheckpoint)
	b = appendTime(b, now)
	b = appendString(b, "reason", reason)
	b = append(b, `,"alg":"`...)
	b = base64.StdEncoding.AppendEncode(b, s.Algorithm())
	b = append(b, `","sig":"`...)
	b = base64.StdEncoding.AppendEncode(b, sig)
	if alt != nil {
		b = append(b, `","alt_alg":"`...)
		b = base64.StdEncoding.AppendEncode(b, alt.Algorithm())
		b = append(b, `","alt_sig":"`...)
		b = base64.StdEncoding.AppendEncode(b, altSig)
	}
	b = append(b, `","chain":[`...)
	for i, c := range key.Chain {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, c.Raw)
		b = append(b, '"')
	}
	return append(b, "]}"...), nil
}

func hexEncode(dst, src []byte) {
	const digits = "0123456789abcdef"
	for i, v := range src {
		dst[2*i], dst[2*i+1] = digits[v>>4], digits[v&0x0f]
	}
}

// checkCheckpoint verifies a checkpoint record's signature with the
// certificate it carries and, when roots are given, that certificate's
// chain to one of them at the checkpoint's time. It returns the signing
// certificate.
func checkCheckpoint(r *record, roots []*x509.Certificate, signerCNs []string) (*x509.Certificate, error) {
	switch r.Reason {
	case CheckpointInterval, CheckpointRotate, CheckpointShutdown:
	default:
		return nil, fmt.Errorf("checkpoint reason %q is not interval, rotate or shutdown", r.Reason)
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return nil, fmt.Errorf("checkpoint time %q: %w", r.Time, err)
	}
	if len(r.Chain) == 0 {
		return nil, errors.New("checkpoint carries no certificate")
	}
	chain := make([]*x509.Certificate, 0, len(r.Chain))
	for i, s := range r.Chain {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("checkpoint chain[%d] is not base64: %w", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("checkpoint chain[%d] does not parse: %w", i, err)
		}
		chain = append(chain, c)
	}
	alg, sig, err := decodeSignature("alg", r.Algorithm, "sig", r.Signature)
	if err != nil {
		return nil, err
	}
	msg := CheckpointMessage(*r.Seq, r.Prev, r.Time, r.Reason)
	signer := chain[0]
	// meshca's intermediate signs checkpoints; a workload certificate
	// chains to the same roots, so without this its key could re-seal a
	// rewritten log (basicConstraints cA and keyCertSign, RFC 5280
	// sections 4.2.1.9 and 4.2.1.3).
	if !signer.BasicConstraintsValid || !signer.IsCA || signer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("checkpoint certificate %q is not a CA certificate (basicConstraints cA and keyCertSign): only meshca's intermediate signs checkpoints", signer.Subject)
	}
	if len(signerCNs) > 0 && !slices.Contains(signerCNs, signer.Subject.CommonName) {
		return nil, fmt.Errorf("checkpoint certificate %q is not one of the pinned signers (--signer-cn)", signer.Subject)
	}
	if err := checkSignature(signer, alg, msg, sig); err != nil {
		return nil, fmt.Errorf("checkpoint signature does not verify with its certificate %q: %w", signer.Subject, err)
	}
	if err := checkAltSignature(signer, r, msg); err != nil {
		return nil, err
	}
	if len(roots) > 0 {
		rep := verify.Chain(chain, verify.Options{Roots: roots, Now: t, PQ: root.SignedPostQuantum(signer)})
		if err := rep.Err(); err != nil {
			return nil, fmt.Errorf("checkpoint certificate %q does not chain to a trusted root at %s: %w", signer.Subject, r.Time, err)
		}
	}
	return signer, nil
}

func checkSignature(c *x509.Certificate, alg pkix.AlgorithmIdentifier, msg, sig []byte) error {
	for _, a := range oid.ClassicalSignatures {
		if a.OID.Equal(alg.Algorithm) {
			return c.CheckSignature(a.Algorithm, msg, sig)
		}
	}
	pub, err := pqc.ParsePKIXPublicKey(c.RawSubjectPublicKeyInfo)
	if err != nil {
		return err
	}
	return pqc.VerifySignature(alg, pub, msg, sig)
}

// decodeSignature decodes a base64 DER AlgorithmIdentifier and a base64
// signature.
func decodeSignature(algName, algB64, sigName, sigB64 string) (pkix.AlgorithmIdentifier, []byte, error) {
	var alg pkix.AlgorithmIdentifier
	algDER, err := base64.StdEncoding.DecodeString(algB64)
	if err != nil {
		return alg, nil, fmt.Errorf("checkpoint %s is not base64: %w", algName, err)
	}
	if rest, err := asn1.Unmarshal(algDER, &alg); err != nil || len(rest) != 0 {
		return alg, nil, fmt.Errorf("checkpoint %s is not a DER AlgorithmIdentifier", algName)
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return alg, nil, fmt.Errorf("checkpoint %s is not base64: %w", sigName, err)
	}
	return alg, sig, nil
}

// checkAltSignature checks a Catalyst intermediate's alternative ML-DSA
// signature, with the certificate's 2.5.29.72 key: a certificate that has
// one must have signed with it.
func checkAltSignature(c *x509.Certificate, r *record, msg []byte) error {
	spki, err := root.AltPublicKeyInfo(c)
	if err != nil {
		return fmt.Errorf("checkpoint certificate %q: %w", c.Subject, err)
	}
	switch {
	case spki == nil && r.AltSignature == "" && r.AltAlgorithm == "":
		return nil
	case spki == nil:
		return fmt.Errorf("checkpoint carries an alternative signature, but its certificate %q has no alternative public key (2.5.29.72)", c.Subject)
	case r.AltSignature == "":
		return fmt.Errorf("checkpoint has no alternative signature (alt_sig), but its certificate %q has an ML-DSA key (2.5.29.72) that must sign it", c.Subject)
	}
	alg, sig, err := decodeSignature("alt_alg", r.AltAlgorithm, "alt_sig", r.AltSignature)
	if err != nil {
		return err
	}
	pub, err := pqc.ParsePKIXPublicKey(spki)
	if err == nil {
		err = pqc.VerifySignature(alg, pub, msg, sig)
	}
	if err != nil {
		return fmt.Errorf("checkpoint alternative signature does not verify with the 2.5.29.72 key of %q: %w", c.Subject, err)
	}
	return nil
}
