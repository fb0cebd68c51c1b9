package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/profile"
)

// TestCertSigners_Defaults: a signer without profile or maxCertTTL takes
// issuance's; without certSigners there are none (CertSigner is ignored).
func TestCertSigners_Defaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	require.NoError(t, err)
	require.Empty(t, c.Authentication.CertSigners)

	c, err = config.Parse([]byte(mergeYAML(t, minimal,
		"issuance: {maxCertTTL: 48h}\nauthentication: {certSigners: [{name: istio-system}, {name: gateways, profile: classical, maxCertTTL: 2h}]}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	s := c.Authentication.CertSigners
	require.Len(t, s, 2)
	require.Equal(t, config.CertSignerConfig{Name: "istio-system", Profile: profile.Catalyst, MaxCertTTL: config.Duration{Duration: 48 * time.Hour}}, s[0])
	require.Equal(t, profile.Classical, s[1].Profile)
	require.Equal(t, 2*time.Hour, s[1].MaxCertTTL.Duration)
}

// TestCertSigners_SeparateIntermediate: a signer with its own intermediate
// mints with the shared intermediate section under its own subject.
func TestCertSigners_SeparateIntermediate(t *testing.T) {
	c, err := config.Parse([]byte(mergeYAML(t, minimal,
		"intermediate: {commonName: mesh CA, lifetime: 720h}\nauthentication: {certSigners: [{name: gateways, intermediate: {separate: true}}, {name: named, intermediate: {separate: true, commonName: named CA}}, {name: shared}]}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	s := c.Authentication.CertSigners
	require.Equal(t, "mesh CA signer gateways", s[0].Intermediate.CommonName)
	ic, ok := c.SeparateIntermediate(s[0])
	require.True(t, ok)
	want := c.Intermediate
	want.CommonName = "mesh CA signer gateways"
	require.Equal(t, want, ic)
	ic, ok = c.SeparateIntermediate(s[1])
	require.True(t, ok)
	require.Equal(t, "named CA", ic.CommonName)
	require.Equal(t, 720*time.Hour, ic.Lifetime.Duration)
	_, ok = c.SeparateIntermediate(s[2])
	require.False(t, ok)
	require.Empty(t, s[2].Intermediate.CommonName)
	require.Equal(t, []string{"gateways", "named"}, c.SeparateLineages(), "a signer on the shared intermediate has no lineage")
}

// TestCertSigners_Validate: every mistake names its key and says how to fix it.
func TestCertSigners_Validate(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"no name": {`authentication: {certSigners: [{profile: classical}]}`,
			[]string{`authentication.certSigners[0].name: must be set: the CertSigner value istio-agent sends (ISTIO_META_CERT_SIGNER)`}},
		"twice": {`authentication: {certSigners: [{name: gw}, {name: gw}]}`,
			[]string{`authentication.certSigners[1].name: "gw" is used twice`}},
		"reserved default": {`authentication: {certSigners: [{name: default}]}`,
			[]string{`authentication.certSigners[0].name: "default" is reserved`}},
		"reserved unknown": {`authentication: {certSigners: [{name: unknown}]}`,
			[]string{`authentication.certSigners[0].name: "unknown" is reserved`}},
		"not a signerName path": {`authentication: {certSigners: [{name: "Gate Ways"}]}`,
			[]string{`authentication.certSigners[0].name: "Gate Ways" is not the path of a Kubernetes signerName (a DNS-1123 subdomain such as istio-system)`}},
		"slash": {`authentication: {certSigners: [{name: "clusterissuers.cert-manager.io/istio-system"}]}`,
			[]string{`authentication.certSigners[0].name: "clusterissuers.cert-manager.io/istio-system" is not the path of a Kubernetes signerName`}},
		"unknown profile": {`authentication: {certSigners: [{name: gw, profile: rsa}]}`,
			[]string{`authentication.certSigners[0].profile: "rsa" is not supported; use one of [catalyst classical]`}},
		"profile the CA cannot issue": {`authentication: {certSigners: [{name: gw, profile: composite}]}`,
			[]string{`authentication.certSigners[0].profile: a CA of profile catalyst cannot issue composite certificates (it can issue [catalyst classical]); use one of [catalyst classical] or change intermediate.profile`}},
		"short maxCertTTL": {`authentication: {certSigners: [{name: gw, maxCertTTL: 30s}]}`,
			[]string{`authentication.certSigners[0].maxCertTTL: 30s is too short; use at least 1m`}},
		"longer than issuance without identities": {"issuance: {maxCertTTL: 24h}\nauthentication: {certSigners: [{name: gw, maxCertTTL: 720h}]}",
			[]string{`authentication.certSigners[0].identities: must be set when maxCertTTL (720h0m0s) is above issuance.maxCertTTL (24h0m0s): any workload can name the signer (ISTIO_META_CERT_SIGNER), so list the SPIFFE ID patterns that may get its longer certificates (e.g. "spiffe://cluster.local/ns/istio-system/sa/*")`}},
		"foreign identity": {`authentication: {certSigners: [{name: gw, identities: ["spiffe://other.example/ns/gw/sa/*"]}]}`,
			[]string{`authentication.certSigners[0].identities[0]: "spiffe://other.example/ns/gw/sa/*" is in trust domain other.example; meshca issues only in cluster.local`}},
		"bad identity pattern": {`authentication: {certSigners: [{name: gw, identities: ["spiffe://cluster.local/ns/gw*"]}]}`,
			[]string{`authentication.certSigners[0].identities[0]: "spiffe://cluster.local/ns/gw*" has "gw*": * must be a whole path segment`}},
		"policy without identities": {`authentication: {certSigners: [{name: gw, policies: [{name: dns, dnsNames: [a.example.com]}]}]}`,
			[]string{`authentication.certSigners[0].policies[0].identities: must list at least one SPIFFE ID pattern`}},
		"commonName without separate": {`authentication: {certSigners: [{name: gw, intermediate: {commonName: gw CA}}]}`,
			[]string{`authentication.certSigners[0].intermediate.commonName: is set but separate is not: set separate: true`}},
		"the shared intermediate's common name": {`authentication: {certSigners: [{name: gw, intermediate: {separate: true, commonName: meshca intermediate}}]}`,
			[]string{`authentication.certSigners[0].intermediate.commonName: "meshca intermediate" is already the common name of intermediate.commonName; each intermediate needs its own subject`}},
		"two signers, one common name": {`authentication: {certSigners: [{name: a, intermediate: {separate: true, commonName: x}}, {name: b, intermediate: {separate: true, commonName: x}}]}`,
			[]string{`authentication.certSigners[1].intermediate.commonName: "x" is already the common name of authentication.certSigners[0].intermediate.commonName`}},
		"separate under a pre-issued intermediate": {"root: {file: {cacertsDir: /etc/cacerts}}\nauthentication: {certSigners: [{name: gw, intermediate: {separate: true}}]}",
			[]string{`authentication.certSigners[0].intermediate.separate: needs a root meshca can mint intermediates from`}},
		"a long name for a separate signer": {`authentication: {certSigners: [{name: ` + strings.Repeat("a", 64) + `, intermediate: {separate: true, commonName: gw}}]}`,
			[]string{`authentication.certSigners[0].intermediate.separate: needs a signer name of at most 63 characters`}},
		"a long default common name": {`authentication: {certSigners: [{name: ` + strings.Repeat("g", 50) + `, intermediate: {separate: true}}]}`,
			[]string{`authentication.certSigners[0].intermediate.commonName: "meshca intermediate signer ggg`}},
		"policy DNS pattern": {`authentication: {certSigners: [{name: gw, policies: [{name: dns, identities: ["spiffe://cluster.local/ns/gw/sa/*"], dnsNames: ["a.*.example.com"]}]}]}`,
			[]string{`authentication.certSigners[0].policies[0].dnsNames[0]: `}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tc.want), "exactly the expected problems: %v", err)
			for i, want := range tc.want {
				require.True(t, strings.HasPrefix(lines[i], want), "got %q, want prefix %q", lines[i], want)
			}
		})
	}
}

// TestCertSigners_ClassicalCA: a classical intermediate issues classical
// leaves only, so a signer defaults to classical and refuses catalyst.
func TestCertSigners_ClassicalCA(t *testing.T) {
	c, err := config.Parse([]byte(mergeYAML(t, minimal, "intermediate: {profile: classical}\nauthentication: {certSigners: [{name: a}, {name: b, profile: catalyst}]}")))
	require.NoError(t, err)
	require.Equal(t, profile.Classical, c.Authentication.CertSigners[0].Profile)
	err = c.Validate()
	require.EqualError(t, err, `authentication.certSigners[1].profile: a CA of profile classical cannot issue catalyst certificates (it can issue [classical]); use one of [classical] or change intermediate.profile`)
}

// TestCertSigners_ExampleBlockValidates: the commented certSigners block of
// deploy/examples/meshca.yaml, uncommented, is a valid configuration.
func TestCertSigners_ExampleBlockValidates(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "meshca.yaml"))
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	start := slices.Index(lines, "  # certSigners:")
	require.GreaterOrEqual(t, start, 0, "the example documents authentication.certSigners")
	lines[start] = "  certSigners:"
	for i := start + 1; i < len(lines) && strings.HasPrefix(lines[i], "  #   "); i++ {
		lines[i] = "  " + strings.TrimPrefix(lines[i], "  # ")
	}
	path := filepath.Join(t.TempDir(), "meshca.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Len(t, c.Authentication.CertSigners, 1)
	s := c.Authentication.CertSigners[0]
	require.Equal(t, "gateways", s.Name)
	require.Equal(t, profile.Classical, s.Profile)
	require.Equal(t, 48*time.Hour, s.MaxCertTTL.Duration)
	require.Equal(t, []string{"spiffe://cluster.local/ns/istio-ingress/sa/*"}, s.Identities)
	require.Equal(t, []string{"*.example.com"}, s.Policies[0].DNSNames)
	require.Equal(t, config.CertSignerIntermediateConfig{Separate: true, CommonName: "meshca gateways CA"}, s.Intermediate)
}
