package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestTrustBundleConfig_InitFillsIstioDefaults(t *testing.T) {
	var c config.TrustBundleConfig
	c.Init()
	require.False(t, c.Enabled, "publishing to a cluster is opt-in")
	require.Equal(t, "istio-system", c.IstiodNamespace)
	require.Equal(t, []string{"kube-system", "kube-public", "kube-node-lease"}, c.NamespaceExclusions)
	require.Equal(t, "istio-ca-crl", c.CRLConfigMapName)
	require.True(t, c.ClusterTrustBundles.On())
	require.Equal(t, []string{"meshca.io/workload"}, c.ClusterTrustBundles.SignerNames)
	require.NoError(t, c.Validate())
}

func TestTrustBundleConfig_ExplicitEmptyExclusionsStayEmpty(t *testing.T) {
	c, err := config.Parse([]byte("trustBundle:\n  namespaceExclusions: []\n  clusterTrustBundles:\n    enabled: false\n"))
	require.NoError(t, err)
	require.Empty(t, c.TrustBundle.NamespaceExclusions)
	require.False(t, c.TrustBundle.ClusterTrustBundles.On())
}

func TestTrustBundleConfig_ValidateNamesKeyAndFix(t *testing.T) {
	tests := map[string]struct {
		c    config.TrustBundleConfig
		want string
	}{
		"bad namespace": {config.TrustBundleConfig{IstiodNamespace: "Istio_System"},
			`trustBundle.istiodNamespace: "Istio_System" is not a namespace name`},
		"bad exclusion": {config.TrustBundleConfig{NamespaceExclusions: []string{"ok", "not ok"}},
			`trustBundle.namespaceExclusions[1]: "not ok" is not a namespace name`},
		"bad selector": {config.TrustBundleConfig{NamespaceSelector: "env in (prod"},
			`trustBundle.namespaceSelector: "env in (prod" is not a label selector`},
		"bad ConfigMap name": {config.TrustBundleConfig{CRLConfigMapName: "CRL!"},
			`trustBundle.crlConfigMapName: "CRL!" is not a ConfigMap name`},
		"CRL ConfigMap named as the root's": {config.TrustBundleConfig{CRLConfigMapName: "istio-ca-root-cert"},
			`trustBundle.crlConfigMapName: "istio-ca-root-cert" is a ConfigMap meshca publishes other content in; keep the default istio-ca-crl`},
		"signer without a domain": {config.TrustBundleConfig{ClusterTrustBundles: config.ClusterTrustBundlesConfig{SignerNames: []string{"workload"}}},
			`trustBundle.clusterTrustBundles.signerNames[0]: "workload" is not a signer name; use <domain>/<name>`},
		"signer twice": {config.TrustBundleConfig{ClusterTrustBundles: config.ClusterTrustBundlesConfig{SignerNames: []string{"a.io/x", "a.io/x"}}},
			`trustBundle.clusterTrustBundles.signerNames[1]: "a.io/x" is listed twice`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.c.Init()
			require.ErrorContains(t, tc.c.Validate(), tc.want)
		})
	}
}

func TestExampleConfig_DocumentsTrustBundleDefaults(t *testing.T) {
	cfg, err := config.Load("../../deploy/examples/meshca.yaml")
	require.NoError(t, err)
	var defaults config.TrustBundleConfig
	defaults.Init()
	require.Equal(t, defaults, cfg.TrustBundle)
}
