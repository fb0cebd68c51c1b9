package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// TestKeyStore_PKCS11ExampleValidates: the commented pkcs11 lines of the
// keyStore block of deploy/examples/meshca.yaml, uncommented in place of
// softkms, are a valid configuration with the example's catalyst profile.
func TestKeyStore_PKCS11ExampleValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	start := slices.Index(lines, "keyStore:")
	require.GreaterOrEqual(t, start, 0)
	typ := slices.Index(lines[start:], "  # type: pkcs11")
	uri := slices.IndexFunc(lines[start:], func(l string) bool { return strings.HasPrefix(l, "  # uri: pkcs11:") })
	require.Positive(t, typ, "the example documents keyStore.type pkcs11")
	require.Positive(t, uri, "the example documents a pkcs11 keyStore.uri")
	require.NotContains(t, lines[start+uri], "pin-value", "the example keeps the PIN out of the configuration")
	require.Equal(t, "  type: softkms           # softkms (0600 files) or pkcs11 (an HSM token)", lines[start+1])
	lines[start+1] = "  type: pkcs11"
	lines[start+typ] = ""
	lines[start+uri] = "  " + strings.TrimPrefix(lines[start+uri], "  # ")
	path := filepath.Join(t.TempDir(), "meshca.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "pkcs11", c.KeyStore.Type)
	require.Equal(t, "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=meshca?pin-source=/etc/meshca/hsm-pin", c.KeyStore.URI)
	require.Equal(t, "catalyst", string(c.Intermediate.Profile))
	require.Equal(t, "/var/lib/meshca/keys", c.KeyStore.Dir, "where the catalyst ML-DSA key lives")
}
