package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestFederationConfig_DefaultsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshca.yaml")
	writeFile(t, path, `
store: {type: bolt, path: state/meshca.db}
federation:
  trustDomains:
    - trustDomain: partner.example
      bundleEndpointURL: https://spire.partner.example:8443
      profile: https_spiffe
      endpointSPIFFEID: spiffe://partner.example/spire/server
      bootstrapBundle: partner-roots.pem
`)
	c, err := config.Load(path)
	require.NoError(t, err)
	f := c.Federation
	require.Equal(t, 2*time.Hour, f.StaleAfter.Duration)
	require.Equal(t, 30*time.Second, f.MinRefresh.Duration)
	require.Equal(t, 30*time.Minute, f.MaxRefresh.Duration)
	require.Equal(t, filepath.Join(dir, "state", "federation"), f.StateDir)
	require.Equal(t, filepath.Join(dir, "partner-roots.pem"), f.TrustDomains[0].BootstrapBundle)
}

func TestFederationConfig_ValidateNamesKeyAndFix(t *testing.T) {
	web := config.FederatedTrustDomainConfig{TrustDomain: "partner.example", BundleEndpointURL: "https://b.partner.example", Profile: "https_web"}
	spf := config.FederatedTrustDomainConfig{TrustDomain: "partner.example", BundleEndpointURL: "https://b.partner.example", Profile: "https_spiffe",
		EndpointSPIFFEID: "spiffe://partner.example/spire/server", BootstrapBundle: "/etc/roots.pem"}
	with := func(d config.FederatedTrustDomainConfig, f func(*config.FederatedTrustDomainConfig)) config.FederatedTrustDomainConfig {
		f(&d)
		return d
	}
	tests := map[string]struct {
		f    config.FederationConfig
		want string
	}{
		"own trust domain": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(web, func(d *config.FederatedTrustDomainConfig) { d.TrustDomain = "cluster.local" })}},
			`federation.trustDomains[0].trustDomain: "cluster.local" is the mesh's own trustDomain`},
		"bad trust domain": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(web, func(d *config.FederatedTrustDomainConfig) { d.TrustDomain = "Partner.Example" })}},
			`federation.trustDomains[0].trustDomain: trust domain "Partner.Example" is invalid`},
		"twice": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{web, web}},
			`federation.trustDomains[1].trustDomain: "partner.example" is listed twice`},
		"http URL": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(web, func(d *config.FederatedTrustDomainConfig) { d.BundleEndpointURL = "http://b.partner.example" })}},
			`federation.trustDomains[0].bundleEndpointURL: "http://b.partner.example" is not an https URL`},
		"no profile": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(web, func(d *config.FederatedTrustDomainConfig) { d.Profile = "" })}},
			`federation.trustDomains[0].profile: must be set: https_web`},
		"spiffe without bootstrap": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(spf, func(d *config.FederatedTrustDomainConfig) { d.BootstrapBundle = "" })}},
			`federation.trustDomains[0].bootstrapBundle: must be set with profile https_spiffe`},
		"endpoint ID of another trust domain": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(spf, func(d *config.FederatedTrustDomainConfig) { d.EndpointSPIFFEID = "spiffe://other.example/x" })}},
			`federation.trustDomains[0].endpointSPIFFEID: spiffe://other.example/x is not in trust domain partner.example`},
		"web with SPIFFE keys": {config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{with(web, func(d *config.FederatedTrustDomainConfig) { d.BootstrapBundle = "/x.pem" })}},
			`federation.trustDomains[0]: endpointSPIFFEID and bootstrapBundle belong to profile https_spiffe`},
		"stale within a refresh": {config.FederationConfig{StaleAfter: config.Duration{Duration: time.Minute}},
			`federation.staleAfter: 1m0s must be longer than federation.maxRefresh 30m0s`},
		"max below min": {config.FederationConfig{MinRefresh: config.Duration{Duration: time.Hour}, StaleAfter: config.Duration{Duration: 3 * time.Hour}},
			`federation.maxRefresh: 30m0s is below federation.minRefresh 1h0m0s`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := config.Defaults(t.TempDir())
			c.Federation = tc.f
			c.Init()
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	t.Run("valid", func(t *testing.T) {
		c := config.Defaults(t.TempDir())
		c.Federation = config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{web, with(spf, func(d *config.FederatedTrustDomainConfig) {
			d.TrustDomain, d.EndpointSPIFFEID = "b.example", "spiffe://b.example/ep"
		})}}
		c.Init()
		require.NoError(t, c.Validate())
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func TestExampleConfig_DocumentsFederationDefaults(t *testing.T) {
	cfg, err := config.Load("../../deploy/examples/meshca.yaml")
	require.NoError(t, err)
	defaults := config.FederationConfig{TrustDomains: []config.FederatedTrustDomainConfig{}}
	defaults.Init(cfg.Server.AdminSocket)
	require.Equal(t, defaults, cfg.Federation)
}
