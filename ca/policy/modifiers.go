package policy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"io"
	"math/big"
	"net/url"
	"time"

	"k8s.io/utils/clock"

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
	if req.Rule != nil && req.CSR != nil {
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
	if req.plan != nil && req.plan.hasUsages {
		requestedUsages(t, req, req.plan.usages)
		return nil
	}
	t.KeyUsage = keyUsageFor(req.publicKey())
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
	if _, err := asn1.Unmarshal(req.subjectPublicKeyInfo(), &spki); err != nil {
		return caerr.New(caerr.InvalidArgument, ReasonCSRMalformed, "CSR public key info is malformed")
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	t.SubjectKeyId = sum[:20]
	return nil
}

// Serial layout: 16 octets, a big-endian millisecond timestamp followed by
// CSPRNG output. The CA/Browser Forum Baseline Requirements §7.1 ask for at
// least 64 bits of CSPRNG output in every serial; RFC 5280 §4.1.2.2 asks for
// a positive INTEGER of at most 20 octets. The time prefix makes serials made
// later sort after earlier ones (as numbers and as big-endian bytes), so the
// issuance store, keyed by serial, appends at the right edge of its B+tree
// instead of rewriting a random leaf page per record.
const (
	serialTimeOctets   = 6  // milliseconds since the Unix epoch, 48 bits
	serialRandomOctets = 10 // 80 bits of CSPRNG output
	serialOctets       = serialTimeOctets + serialRandomOctets
)

// RandomSerial returns a positive 128-bit serial number: a 48-bit
// millisecond timestamp (top bit clear, so the DER INTEGER is positive and
// 16 octets long) followed by 80 random bits from crypto/rand.
func RandomSerial() (*big.Int, error) {
	return serialAt(clock.RealClock{}.Now(), rand.Reader)
}

// serialAt builds a serial for time now from the random octets of r.
func serialAt(now time.Time, r io.Reader) (*big.Int, error) {
	var b [serialOctets]byte
	for {
		var ts [8]byte
		binary.BigEndian.PutUint64(ts[:], uint64(max(now.UnixMilli(), 0)))
		copy(b[:serialTimeOctets], ts[8-serialTimeOctets:])
		b[0] &= 0x7f
		if _, err := io.ReadFull(r, b[serialTimeOctets:]); err != nil {
			return nil, caerr.Wrap(err, caerr.Internal, "serial", "generate serial number")
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
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
// the issuer's NotAfter; an issuer outside its validity cannot sign. With
// a requested duration (report), the clamp is reported, and a leaf that
// would live less than min is refused.
type validity struct {
	now    func() time.Time
	ttl    time.Duration
	min    time.Duration
	report bool
}

func (v validity) Modify(t *x509.Certificate, req *Request, issuer *x509.Certificate) error {
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
		if v.min > 0 && t.NotAfter.Sub(now) < v.min {
			return caerr.New(caerr.Unavailable, ReasonIssuerExpiresTooSoon, "the signing intermediate expires at %s, before the requested minimum lifetime of %s", issuer.NotAfter.UTC().Format(time.RFC3339), v.min)
		}
		if v.report {
			req.adjust(ReasonDurationClampedToIssuer, "the certificate ends with its signing intermediate at "+issuer.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// crlDistribution adds the configured CRL distribution points.
type crlDistribution struct{ urls []string }

func (c crlDistribution) Modify(t *x509.Certificate, _ *Request, _ *x509.Certificate) error {
	t.CRLDistributionPoints = append([]string(nil), c.urls...)
	return nil
}
