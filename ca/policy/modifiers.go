package policy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"time"

	"github.com/meshca/meshca/ca/caerr"
)

// Modifier shapes one aspect of the certificate template.
type Modifier interface {
	Modify(tmpl *x509.Certificate, req *Request, issuer *x509.Certificate) error
}

// leafSubjectAndSANs gives the leaf an empty subject and the identity as its
// only URI SAN (plus DNS/IP SANs a rule allowed). Go marks the SAN extension
// critical because the subject is empty (RFC 5280 §4.2.1.6).
type leafSubjectAndSANs struct{}

func (leafSubjectAndSANs) Modify(t *x509.Certificate, req *Request, _ *x509.Certificate) error {
	t.Subject = pkix.Name{}
	t.URIs = []*url.URL{req.Identity}
	if req.Rule != nil {
		t.DNSNames = append([]string(nil), req.CSR.DNSNames...)
		t.IPAddresses = append(t.IPAddresses, req.CSR.IPAddresses...)
		if req.CSR.Subject.CommonName != "" {
			t.Subject.CommonName = req.CSR.Subject.CommonName
		}
	}
	return nil
}

// leafUsages sets the usages of a workload leaf: CA:false, digitalSignature
// (plus keyEncipherment for RSA), serverAuth and clientAuth.
type leafUsages struct{}

func (leafUsages) Modify(t *x509.Certificate, req *Request, _ *x509.Certificate) error {
	t.BasicConstraintsValid = true
	t.IsCA = false
	t.KeyUsage = keyUsageFor(req.CSR)
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	return nil
}

// subjectKeyID sets the leaf's subject key identifier the way Go 1.26's
// x509.CreateCertificate does for CAs and ca/certenc.SubjectKeyID computes
// it (RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the
// subjectPublicKey bits), so that every profile's leaves agree.
type subjectKeyID struct{}

func (subjectKeyID) Modify(t *x509.Certificate, req *Request, _ *x509.Certificate) error {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(req.CSR.RawSubjectPublicKeyInfo, &spki); err != nil {
		return caerr.New(caerr.InvalidArgument, ReasonCSRMalformed, "CSR public key info is malformed")
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	t.SubjectKeyId = sum[:20]
	return nil
}

// serialLimit bounds serials to 128 random bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// RandomSerial returns a positive 128-bit random serial number.
func RandomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, caerr.Wrap(err, caerr.Internal, "serial", "generate serial number")
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

type randomSerial struct{}

func (randomSerial) Modify(t *x509.Certificate, _ *Request, _ *x509.Certificate) error {
	n, err := RandomSerial()
	t.SerialNumber = n
	return err
}

// Backdate tolerates clock skew between meshca and relying parties.
const Backdate = 2 * time.Minute

// validity sets NotBefore = now − 2 min and NotAfter = now + TTL clamped to
// the issuer's NotAfter; an issuer outside its validity cannot sign.
type validity struct {
	now func() time.Time
	ttl time.Duration
}

func (v validity) Modify(t *x509.Certificate, _ *Request, issuer *x509.Certificate) error {
	now := v.now()
	if !now.Before(issuer.NotAfter) {
		return caerr.New(caerr.Unavailable, ReasonIssuerExpired, "the signing intermediate expired at %s", issuer.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(issuer.NotBefore) {
		return caerr.New(caerr.Unavailable, ReasonIssuerNotYetValid, "the signing intermediate is not valid before %s", issuer.NotBefore.UTC().Format(time.RFC3339))
	}
	t.NotBefore = now.Add(-Backdate).Truncate(time.Second)
	if t.NotBefore.Before(issuer.NotBefore) {
		t.NotBefore = issuer.NotBefore
	}
	t.NotAfter = now.Add(v.ttl).Truncate(time.Second)
	if t.NotAfter.After(issuer.NotAfter) {
		t.NotAfter = issuer.NotAfter
	}
	return nil
}

// crlDistribution adds the configured CRL distribution points.
type crlDistribution struct{ urls []string }

func (c crlDistribution) Modify(t *x509.Certificate, _ *Request, _ *x509.Certificate) error {
	t.CRLDistributionPoints = append([]string(nil), c.urls...)
	return nil
}
