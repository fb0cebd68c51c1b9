package config_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// The shipped example must parse strictly and validate: it documents every key.
func TestExampleConfig_ParsesAndValidates(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Equal(t, config.DefaultCertTTL, cfg.Issuance.DefaultCertTTL.Duration)
	require.Equal(t, config.DefaultMaxCertTTL, cfg.Issuance.MaxCertTTL.Duration)
	require.Equal(t, config.VerifySignaturesAuto, cfg.Issuance.VerifySignatures)
	require.Equal(t, "/etc/meshca/root/root-cert.pem", cfg.Root.File.RootCert)
	var limits config.LimitsConfig
	limits.Init()
	require.Equal(t, limits, cfg.Server.Limits, "the example shows the default server.limits")
}
