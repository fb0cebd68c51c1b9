package intermediate

import (
	"crypto/x509"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// certNotAfter is the expiry of a generation's certificate (zero if it
// does not parse).
func certNotAfter(g store.Generation) time.Time {
	c, err := x509.ParseCertificate(g.CertDER)
	if err != nil {
		return time.Time{}
	}
	return c.NotAfter
}
