package inventory

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/meshca/meshca/ca/pqc"
)

// issuedByOneOf reports whether leaf was issued by one of cas: its issuer
// name is the CA's subject (RFC 5280 section 4.1.2.4), its authority key
// identifier, when both are present, is the CA's subject key identifier
// (section 4.2.1.1), and its signature verifies under the CA's public key
// (section 4.1.1.3; ML-DSA and composite signatures through ca/pqc). Names
// and key identifiers are public, so only the signature makes it meshca's.
func issuedByOneOf(leaf *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if !bytes.Equal(leaf.RawIssuer, ca.RawSubject) {
			continue
		}
		if len(leaf.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 && !bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId) {
			continue
		}
		err := leaf.CheckSignatureFrom(ca)
		if err == nil {
			return true
		}
		if errors.Is(err, x509.ErrUnsupportedAlgorithm) && pqc.VerifyCertificateSignature(leaf, ca.RawSubjectPublicKeyInfo) == nil {
			return true
		}
	}
	return false
}

// Intermediates returns meshca's intermediates in force as src reports
// them (the active generation and the retired ones still published), for
// NewSecretScan. The list is read again only when the active generation
// changes, so 50k Secrets arriving at once read the store once.
func Intermediates(src *CASource) func() []*x509.Certificate {
	var mu sync.Mutex
	var cached []*x509.Certificate
	var gen uint64
	var have bool
	return func() []*x509.Certificate {
		mu.Lock()
		defer mu.Unlock()
		if active := src.Active(); !have || active != gen {
			certs, err := src.Certificates(context.Background())
			var out []*x509.Certificate
			for _, c := range certs {
				if c.Kind == KindIntermediate {
					out = append(out, c.Cert)
				}
			}
			cached, gen, have = out, active, err == nil
		}
		return cached
	}
}
