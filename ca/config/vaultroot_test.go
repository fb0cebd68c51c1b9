package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestVaultRoot_ParsesValidatesAndRefusesPQProfiles(t *testing.T) {
	c, err := config.Parse([]byte(`
root:
  source: vault
  vault:
    address: https://vault:8200
    auth: {method: approle, roleID: r, secretIDFile: secret-id}
intermediate: {profile: classical}
keyStore: {dir: /k}
store: {path: /s}
`))
	require.NoError(t, err)
	require.Equal(t, "pki", c.Root.Vault.Mount)
	require.NoError(t, c.Validate())
	c.Intermediate.Profile = "catalyst"
	require.ErrorContains(t, c.Validate(), "intermediate.profile: \"catalyst\" needs a post-quantum signature from the root")
	c.Intermediate.Profile = "classical"
	c.Root.File.RootCert = "x"
	require.ErrorContains(t, c.Validate(), "root.file: must be empty when root.source is vault")
	c.Root.Source = "file"
	c.Root.File.RootCert = ""
	require.ErrorContains(t, c.Validate(), "root.file: set rootCert and rootKey")
}
