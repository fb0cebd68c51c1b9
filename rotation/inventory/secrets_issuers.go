package inventory

import (
	"context"
	"crypto/x509"
	"sync"

	"github.com/meshca/meshca/ca/root"
)

// issuedByOneOf reports whether one of cas issued leaf (root.IssuedBy:
// names and key identifiers are public, so only the signature makes it
// meshca's).
func issuedByOneOf(leaf *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if root.IssuedBy(leaf, ca) {
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
