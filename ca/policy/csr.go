// Package policy owns meshca's issuance policy: CSR intake, and a pipeline
// of small typed validators (what a request may ask for) and modifiers (what
// the certificate says). The identity always comes from the caller's
// authentication; the CSR contributes only its public key, after its
// signature has been checked (or the front door hands over a key whose
// possession it proved). Front doors add per-request options (SignOption:
// usages, a lifetime, isCA, validators of their own), which the pipeline
// interprets; it stays the one place that decides what is issued. This
// package signs nothing and stores nothing.
package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"

	"github.com/meshca/meshca/ca/caerr"
)

// MaxCSRSize bounds a CSR in bytes, PEM or DER. Istio's are under 2 KiB.
const MaxCSRSize = 64 << 10

// Stable reasons for rejected requests (audit log and metrics).
const (
	ReasonCSRTooLarge       = "csr_too_large"
	ReasonCSRMalformed      = "csr_malformed"
	ReasonCSRSignature      = "csr_bad_signature"
	ReasonForeignIdentity   = "csr_foreign_identity"
	ReasonIdentityInvalid   = "identity_invalid"
	ReasonDNSSAN            = "csr_dns_san"
	ReasonIPSAN             = "csr_ip_san"
	ReasonEmailSAN          = "csr_email_san"
	ReasonCommonName        = "csr_common_name"
	ReasonCARequest         = "csr_requests_ca"
	ReasonKeyType           = "csr_unsupported_key"
	ReasonKeyTooSmall       = "csr_key_too_small"
	ReasonTTLTooLong        = "ttl_too_long"
	ReasonIssuerExpired     = "issuer_expired"
	ReasonIssuerNotYetValid = "issuer_not_yet_valid"
)

// ParseCSR accepts one PEM "CERTIFICATE REQUEST" block or raw DER, enforces
// MaxCSRSize, checks the key type and then the CSR's self-signature. Errors never echo input.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) > MaxCSRSize {
		return nil, caerr.New(caerr.InvalidArgument, ReasonCSRTooLarge, "CSR is %d bytes; the limit is %d", len(b), MaxCSRSize)
	}
	der := b
	if trimmed := bytes.TrimSpace(b); bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, rest := pem.Decode(trimmed)
		if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
			return nil, caerr.New(caerr.InvalidArgument, ReasonCSRMalformed, "CSR is not a PEM CERTIFICATE REQUEST block")
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, caerr.New(caerr.InvalidArgument, ReasonCSRMalformed, "CSR PEM has trailing data; send exactly one CERTIFICATE REQUEST block")
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, caerr.New(caerr.InvalidArgument, ReasonCSRMalformed, "CSR cannot be parsed as PKCS#10")
	}
	// Check the key type first: Go cannot verify some signatures (DSA), and
	// "unsupported key" is the more useful answer.
	if err := checkKey(csr); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, caerr.New(caerr.InvalidArgument, ReasonCSRSignature, "CSR signature does not verify with its own public key")
	}
	return csr, nil
}
