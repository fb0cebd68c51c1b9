package vault

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// NewTestPKI gives external tests (which may import ca/authority) a PKI
// mount with an AppRole on the package's Vault.
func NewTestPKI(t *testing.T, name string) (config.VaultConfig, *x509.Certificate) {
	p := newPKI(t, name)
	return p.config(), p.root
}

// SealTestVault seals the package's Vault and returns a function that
// unseals it; the test's cleanup unseals it if the test did not.
func SealTestVault(t *testing.T) (unseal func()) {
	t.Helper()
	require.NoError(t, vaultEnv.Seal(testCtx(t)))
	sealed := true
	unseal = func() {
		t.Helper()
		if sealed {
			require.NoError(t, vaultEnv.Unseal(testCtx(t)))
			sealed = false
		}
	}
	t.Cleanup(func() {
		if sealed {
			_ = vaultEnv.Unseal(context.Background())
		}
	})
	return unseal
}

// OpenSSLVerify checks with openssl verify -x509_strict that leaf chains
// through inter to root.
func OpenSSLVerify(t *testing.T, root, inter, leaf *x509.Certificate) {
	opensslVerify(t, root, inter, leaf)
}
