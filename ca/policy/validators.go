package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"net/url"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/oid"
)

// Validator checks one aspect of a request and returns a *caerr.Error.
type Validator interface {
	Validate(req *Request) error
}

// ValidatorFunc adapts a function to Validator.
type ValidatorFunc func(req *Request) error

// Validate implements Validator.
func (f ValidatorFunc) Validate(req *Request) error { return f(req) }

func invalid(reason, format string, args ...any) error {
	return caerr.New(caerr.InvalidArgument, reason, format, args...)
}

// spiffeIdentity requires the authenticated identity to be a SPIFFE ID
// (SPIFFE-ID §2) of the mesh's trust domain with a non-root path
// (X509-SVID §3.1).
type spiffeIdentity struct{ trustDomain string }

func (v spiffeIdentity) Validate(req *Request) error {
	if req.Identity == nil {
		return invalid(ReasonIdentityInvalid, "no authenticated identity")
	}
	td, err := identity.TrustDomain(v.trustDomain)
	if err != nil {
		return invalid(ReasonIdentityInvalid, "the mesh's %v", err)
	}
	if _, err := identity.WorkloadURL(req.Identity, td); err != nil {
		return invalid(ReasonIdentityInvalid, "%v", err)
	}
	return nil
}

// csrIdentity requires the CSR's URI SANs to be exactly the authenticated identity.
type csrIdentity struct{}

func (csrIdentity) Validate(req *Request) error {
	uris := req.CSR.URIs
	if len(uris) != 1 || uris[0].String() != req.Identity.String() {
		return invalid(ReasonForeignIdentity, "CSR URI SANs %s do not equal the authenticated identity %s", urlList(uris), req.Identity)
	}
	return nil
}

func urlList(us []*url.URL) string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// extraSANs rejects DNS, IP and email SANs unless the rule allows them.
type extraSANs struct{ rule *Rule }

func (v extraSANs) Validate(req *Request) error {
	if req.CSR == nil {
		return nil // a proven key asks for no names
	}
	for _, d := range req.CSR.DNSNames {
		if strings.Contains(d, "*") {
			return invalid(ReasonDNSSAN, "CSR asks for wildcard DNS name %s; meshca never issues wildcard certificates, list each name", identity.Quote(d))
		}
		if !v.rule.allowsDNS(d) {
			return invalid(ReasonDNSSAN, "CSR asks for DNS name %q, which no policy allows for %s", d, req.Identity)
		}
	}
	for _, ip := range req.CSR.IPAddresses {
		if !v.rule.allowsIP(ip) {
			return invalid(ReasonIPSAN, "CSR asks for IP address %s, which no policy allows for %s", ip, req.Identity)
		}
	}
	if len(req.CSR.EmailAddresses) > 0 {
		return invalid(ReasonEmailSAN, "CSR asks for email SANs; meshca never issues them")
	}
	return nil
}

// commonName rejects a CN unless the rule allows one equal to an allowed DNS name.
type commonName struct{ rule *Rule }

func (v commonName) Validate(req *Request) error {
	if req.CSR == nil {
		return nil
	}
	cn := req.CSR.Subject.CommonName
	if cn == "" {
		return nil
	}
	if v.rule != nil && v.rule.AllowCommonName && v.rule.allowsDNS(cn) {
		return nil
	}
	return invalid(ReasonCommonName, "CSR has a common name; workload certificates carry the identity in the URI SAN only")
}

// notCA rejects CSRs that request CA:true or certificate signing.
type notCA struct{}

func (notCA) Validate(req *Request) error {
	if req.CSR == nil {
		return nil
	}
	for _, ext := range req.CSR.Extensions {
		switch {
		case ext.Id.Equal(oid.BasicConstraints):
			var bc struct {
				IsCA bool `asn1:"optional"`
				Len  int  `asn1:"optional,default:-1"`
			}
			if _, err := asn1.Unmarshal(ext.Value, &bc); err != nil {
				return invalid(ReasonCSRMalformed, "CSR basicConstraints extension is malformed")
			}
			if bc.IsCA {
				return invalid(ReasonCARequest, "CSR requests a CA certificate")
			}
		case ext.Id.Equal(oid.KeyUsage):
			var bits asn1.BitString
			if _, err := asn1.Unmarshal(ext.Value, &bits); err != nil {
				return invalid(ReasonCSRMalformed, "CSR keyUsage extension is malformed")
			}
			if bits.At(5) == 1 || bits.At(6) == 1 { // keyCertSign, cRLSign
				return invalid(ReasonCARequest, "CSR requests certificate or CRL signing")
			}
		}
	}
	return nil
}

// keyType accepts RSA 2048–8192, ECDSA P-256/P-384 and Ed25519.
type keyType struct{}

func (keyType) Validate(req *Request) error {
	if req.CSR != nil {
		return checkKey(req.CSR)
	}
	return checkPublicKey("public key", req.PublicKey, keyAlgorithm(req.PublicKey))
}

func checkKey(csr *x509.CertificateRequest) error {
	return checkPublicKey("CSR", csr.PublicKey, csr.PublicKeyAlgorithm.String())
}

// checkPublicKey checks pub, the key of what (a CSR or a public key); alg
// names its algorithm.
func checkPublicKey(what string, pub crypto.PublicKey, alg string) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		n := k.N.BitLen()
		if n < 2048 {
			return invalid(ReasonKeyTooSmall, "%s RSA key is %d bits; the minimum is 2048", what, n)
		}
		if n > 8192 {
			return invalid(ReasonKeyType, "%s RSA key is %d bits; the maximum is 8192", what, n)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return invalid(ReasonKeyType, "%s ECDSA curve %s is not supported; use P-256 or P-384", what, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return invalid(ReasonKeyType, "%s Ed25519 key is %d bytes, not %d", what, len(k), ed25519.PublicKeySize)
		}
	default:
		return invalid(ReasonKeyType, "%s key type %s is not supported; use RSA (2048+), ECDSA P-256/P-384 or Ed25519", what, alg)
	}
	return nil
}

// keyAlgorithm names pub's algorithm for messages.
func keyAlgorithm(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return "unknown"
}

// checkKeySource requires exactly one of a CSR and a proven public key,
// checks the key and encodes its SubjectPublicKeyInfo.
func (r *Request) checkKeySource() error {
	switch {
	case r.CSR != nil && r.PublicKey != nil:
		return invalid(ReasonNoPublicKey, "the request carries both a CSR and a public key; send one")
	case r.CSR != nil:
		return nil
	case r.PublicKey == nil:
		return invalid(ReasonNoPublicKey, "the request carries neither a CSR nor a public key")
	}
	if err := checkPublicKey("public key", r.PublicKey, keyAlgorithm(r.PublicKey)); err != nil {
		return err
	}
	spki, err := x509.MarshalPKIXPublicKey(r.PublicKey)
	if err != nil {
		return invalid(ReasonKeyType, "the public key cannot be encoded as a SubjectPublicKeyInfo")
	}
	r.plan.spki = spki // setPlan made a plan for a request with a PublicKey
	return nil
}

// ttl rejects (never clamps) a requested lifetime above the maximum.
type ttl struct{ max time.Duration }

func (v ttl) Validate(req *Request) error {
	if req.TTL > v.max {
		return invalid(ReasonTTLTooLong, "requested TTL %s exceeds the maximum %s", req.TTL, v.max)
	}
	return nil
}

// keyUsageFor returns the key usage meshca gives a leaf with this key:
// keyEncipherment only for RSA (it is meaningless for ECDSA and Ed25519).
func keyUsageFor(pub crypto.PublicKey) x509.KeyUsage {
	if _, ok := pub.(*rsa.PublicKey); ok {
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return x509.KeyUsageDigitalSignature
}
