package vault

import (
	"crypto/x509"
	"testing"

	"github.com/meshca/meshca/ca/config"
)

// NewTestPKI gives external tests (which may import ca/authority) a PKI
// mount with an AppRole on the package's Vault.
func NewTestPKI(t *testing.T, name string) (config.VaultConfig, *x509.Certificate) {
	p := newPKI(t, name)
	return p.config(), p.root
}
