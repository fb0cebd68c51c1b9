package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestBundleEndpoint_OffByDefaultAndDefaultsWhenOn(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.False(t, c.BundleEndpoint.Enabled())
	require.Equal(t, config.BundleEndpointConfig{}, c.BundleEndpoint, "nothing is filled in while it is off")

	c, err = config.Parse([]byte(mergeYAML(t, minimal, "bundleEndpoint: {address: ':8443', profile: https_spiffe}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	b := c.BundleEndpoint
	require.True(t, b.Enabled())
	require.Equal(t, "/", b.Path)
	require.Equal(t, 5*time.Minute, b.RefreshHint.Duration)
	require.Equal(t, 256, b.MaxConnections)
	require.Equal(t, 24*time.Hour, b.SPIFFE.CertTTL.Duration)
	require.Equal(t, "spiffe://"+c.TrustDomain+"/ns/istio-system/sa/meshca", b.SPIFFE.SPIFFEID)
	require.Equal(t, b.SPIFFE.SPIFFEID, b.ID().String())

	c, err = config.Parse([]byte(mergeYAML(t, minimal, "bundleEndpoint: {address: ':8443', https_web: {certFile: tls.crt, keyFile: /etc/tls/tls.key}}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, config.BundleProfileWeb, c.BundleEndpoint.Profile, "https_web is the default profile")
	require.Equal(t, 30*time.Second, c.BundleEndpoint.Web.ReloadInterval.Duration)
	require.Equal(t, "/etc/tls/tls.key", c.BundleEndpoint.Web.KeyFile)
}

func TestBundleEndpoint_ValidationNamesTheKeyAndTheFix(t *testing.T) {
	web := "https_web: {certFile: /c, keyFile: /k}, "
	tests := map[string]struct{ yaml, want string }{
		"bad address":       {"bundleEndpoint: {" + web + "address: '8443'}", `bundleEndpoint.address: "8443" is not host:port`},
		"relative path":     {"bundleEndpoint: {" + web + "address: ':8443', path: bundle}", `bundleEndpoint.path: "bundle" must be a URL path starting with /`},
		"path with a query": {"bundleEndpoint: {" + web + "address: ':8443', path: '/b?x=1'}", "bundleEndpoint.path: "},
		"refresh hint":      {"bundleEndpoint: {" + web + "address: ':8443', refreshHint: 1s}", "bundleEndpoint.refreshHint: 1s is too short; use at least 10s"},
		"max connections":   {"bundleEndpoint: {" + web + "address: ':8443', maxConnections: 2}", "bundleEndpoint.maxConnections: 2 is too few"},
		"unknown profile":   {"bundleEndpoint: {address: ':8443', profile: https}", `bundleEndpoint.profile: "https" is not https_web or https_spiffe`},
		"web without files": {"bundleEndpoint: {address: ':8443'}", "bundleEndpoint.https_web: certFile and keyFile must both be set"},
		"foreign SVID": {"bundleEndpoint: {address: ':8443', profile: https_spiffe, https_spiffe: {spiffeID: 'spiffe://other.org/meshca'}}",
			`bundleEndpoint.https_spiffe.spiffeID: "spiffe://other.org/meshca" is not of the trust domain`},
		"not a SPIFFE ID": {"bundleEndpoint: {address: ':8443', profile: https_spiffe, https_spiffe: {spiffeID: 'https://x/y'}}", "bundleEndpoint.https_spiffe.spiffeID: "},
		"short SVID":      {"bundleEndpoint: {address: ':8443', profile: https_spiffe, https_spiffe: {certTTL: 1m}}", "bundleEndpoint.https_spiffe.certTTL: 1m0s is too short"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.True(t, strings.Contains(err.Error(), tc.want), "%v\nwant %q", err, tc.want)
		})
	}
}

// The commented bundleEndpoint block of the shipped example, uncommented,
// parses strictly and validates: it documents every key with valid values.
func TestBundleEndpoint_ExampleBlockValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	var block []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "# bundleEndpoint:":
			in = true
		case in && !strings.HasPrefix(line, "#   "):
			in = false
		}
		if in {
			block = append(block, strings.TrimPrefix(line, "# "))
		}
	}
	require.Greater(t, len(block), 10, "no bundleEndpoint block in the example")
	for _, profile := range []string{config.BundleProfileWeb, config.BundleProfileSPIFFE} {
		y := strings.Replace(strings.Join(block, "\n"), "profile: https_web ", "profile: "+profile+" ", 1)
		c, err := config.Parse([]byte(mergeYAML(t, minimal, y)))
		require.NoError(t, err, y)
		require.NoError(t, c.Validate(), y)
		require.Equal(t, profile, c.BundleEndpoint.Profile)
		require.Equal(t, []string{"meshca-bundle.example.com"}, c.BundleEndpoint.SPIFFE.DNSNames)
	}
}
