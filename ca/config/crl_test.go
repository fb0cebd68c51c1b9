package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestCRL_Defaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, 24*time.Hour, c.CRL.Validity.Duration)
	require.Equal(t, 12*time.Hour, c.CRL.RepublishInterval.Duration, "republish at half the validity")
	require.Equal(t, 200*time.Millisecond, c.CRL.CoalesceWindowOrDefault())
	require.Equal(t, time.Hour, c.CRL.RootCRL.Refresh.Duration)
	require.Empty(t, c.CRL.URL)

	c, err = config.Parse([]byte(mergeYAML(t, minimal, "crl: {validity: 2h, url: 'http://meshca:15014/crl/', coalesceWindow: 0s}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, time.Hour, c.CRL.RepublishInterval.Duration)
	require.Equal(t, time.Duration(0), c.CRL.CoalesceWindowOrDefault(), "0 is kept: rebuild on every revocation")
	require.Equal(t, "http://meshca:15014/crl", c.CRL.BaseURL())

	c, err = config.Parse([]byte(mergeYAML(t, minimal, "crl: {url: 'http://meshca:15016/crl', listen: ':15016'}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, ":15016", c.CRL.Listen)
}

func TestCRL_ValidationNamesTheKeyAndTheFix(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"validity too short":                    {"crl: {validity: 30s}", "crl.validity: 30s is too short; use at least 1m0s"},
		"republish after nextUpdate":            {"crl: {validity: 1h, republishInterval: 2h}", "crl.republishInterval: 2h0m0s must be above 0 and below crl.validity 1h0m0s"},
		"republish equal to validity":           {"crl: {validity: 1h, republishInterval: 1h}", "crl.republishInterval: "},
		"coalesce window too long":              {"crl: {coalesceWindow: 1m}", "crl.coalesceWindow: 1m0s is out of range; use 0"},
		"negative coalesce window":              {"crl: {coalesceWindow: -1s}", "crl.coalesceWindow: "},
		"url not http":                          {"crl: {url: 'ldap://meshca/crl'}", "crl.url: \"ldap://meshca/crl\" is not an http(s) URL"},
		"url with a query":                      {"crl: {url: 'http://meshca/crl?x=1'}", "crl.url: "},
		"root CRL with a root key":              {"crl: {rootCRL: {file: /etc/root.crl}}", "crl.rootCRL: must be empty with root.file.rootCert and rootKey: meshca holds the root key"},
		"listen not host:port":                  {"crl: {listen: '15016'}", `crl.listen: "15016" is not host:port (e.g. :15016); leave it empty to serve the CRLs on server.opsListen`},
		"listen on the ops port":                {"crl: {listen: ':15014'}\nserver: {opsListen: ':15014'}", `crl.listen: ":15014" is also server.opsListen (":15014"); give the CRLs their own port`},
		"listen on the ops port, all addresses": {"crl: {listen: '0.0.0.0:15014'}\nserver: {opsListen: ':15014'}", `crl.listen: "0.0.0.0:15014" is also server.opsListen (":15014")`},
		"url on the ops port, leading zero": {"crl: {listen: ':15016', url: 'http://meshca:015014/crl'}\nserver: {opsListen: ':15014'}",
			`crl.url: "http://meshca:015014/crl" names server.opsListen's port 15014`},
		"url still on the ops port": {"crl: {listen: ':15016', url: 'http://meshca.istio-system.svc:15014/crl'}\nserver: {opsListen: ':15014'}",
			`crl.url: "http://meshca.istio-system.svc:15014/crl" names server.opsListen's port 15014, but crl.listen ":15016" serves the CRLs`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.ErrorContains(t, err, tc.want)
			require.Len(t, strings.Split(err.Error(), "\n"), 1, "exactly one problem: %v", err)
		})
	}
}

func TestCRL_RootCRLForCACertsDir(t *testing.T) {
	base := func(t *testing.T, crl string) error {
		c := config.Defaults(t.TempDir())
		c.Root.File = config.FileRootConfig{CACertsDir: "/etc/cacerts"}
		c2, err := config.Parse([]byte(crl))
		require.NoError(t, err)
		c.CRL = c2.CRL
		return c.Validate()
	}
	require.NoError(t, base(t, "crl: {rootCRL: {file: /etc/root.crl}}"))
	require.NoError(t, base(t, "crl: {rootCRL: {url: 'https://pki.example/root.crl', refresh: 10m}}"))
	require.ErrorContains(t, base(t, "crl: {rootCRL: {file: /a, url: 'https://pki.example/root.crl'}}"), "crl.rootCRL: set file or url, not both")
	require.ErrorContains(t, base(t, "crl: {rootCRL: {url: 'ftp://pki.example/root.crl'}}"), "crl.rootCRL.url: ")
	require.ErrorContains(t, base(t, "crl: {rootCRL: {file: /a, refresh: 5s}}"), "crl.rootCRL.refresh: 5s is too short")
}
