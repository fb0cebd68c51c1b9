package inspect

import (
	"crypto/x509"
	"fmt"

	"github.com/meshca/meshca/ca/pqc"
)

// PostQuantum is the Describer for meshca's post-quantum profiles: the
// certificate's profile (classical, Catalyst hybrid, composite, pure
// ML-DSA), its key and signature algorithms by name, and its Catalyst
// alternative public key (2.5.29.72) and alternative signature
// (2.5.29.73/.74). It verifies nothing (meshca verify --pq does).
func PostQuantum(c *x509.Certificate) []string {
	d, err := pqc.Describe(c)
	if err != nil {
		return []string{"cannot be read: " + err.Error()}
	}
	lines := []string{
		"profile " + d.Profile,
		"public key " + d.PublicKey.String(),
		"signature " + d.Signature.String(),
	}
	if d.AltPublicKey != nil {
		crit := "non-critical"
		if d.AltPublicKeyCritical {
			crit = "critical"
		}
		lines = append(lines, fmt.Sprintf("alt public key (2.5.29.72, %s) %s", crit, d.AltPublicKey))
	}
	if d.AltSignature != nil {
		lines = append(lines, fmt.Sprintf("alt signature (2.5.29.73/.74) %s", d.AltSignature))
	}
	return lines
}

// certAlgorithms names c's key and signature algorithms, including the
// ML-DSA and composite ones crypto/x509 (Go 1.26) does not know.
func certAlgorithms(c *x509.Certificate) (pub, sig string) {
	pub, sig = KeyString(c.PublicKey, c.PublicKeyAlgorithm), c.SignatureAlgorithm.String()
	if c.PublicKey != nil && c.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
		return pub, sig
	}
	d, err := pqc.Describe(c)
	if err != nil {
		return pub, sig
	}
	if c.PublicKey == nil {
		pub = d.PublicKey.Name
	}
	if c.SignatureAlgorithm == x509.UnknownSignatureAlgorithm {
		sig = d.Signature.Name
	}
	return pub, sig
}

// selfSigned reports whether c verifies under its own key, for every
// profile (ML-DSA and composite through ca/pqc).
func selfSigned(c *x509.Certificate) bool {
	if c.SignatureAlgorithm != x509.UnknownSignatureAlgorithm {
		return c.CheckSignatureFrom(c) == nil
	}
	return pqc.VerifyCertificateSignature(c, c.RawSubjectPublicKeyInfo) == nil
}
