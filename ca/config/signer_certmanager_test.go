package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestCertManager_Defaults(t *testing.T) {
	c, err := config.Parse([]byte(mergeYAML(t, minimal, "kubernetes: {kubeconfig: /etc/kubeconfig}\nsigners: {certManager: {enabled: true}}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.True(t, c.Signers.CertManager.Enabled)
	require.True(t, c.Signers.Any())
	require.Equal(t, 5*time.Minute, c.Signers.CertManager.HealthCheckInterval.Duration)

	c, err = config.Parse([]byte(mergeYAML(t, minimal, "kubernetes: {kubeconfig: /etc/kubeconfig}\nsigners: {certManager: {enabled: true, healthCheckInterval: 30s}}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, 30*time.Second, c.Signers.CertManager.HealthCheckInterval.Duration)
}

func TestCertManager_ValidationNamesTheKeyAndTheFix(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"interval too short": {"kubernetes: {kubeconfig: /k}\nsigners: {certManager: {enabled: true, healthCheckInterval: 100ms}}",
			"signers.certManager.healthCheckInterval: 100ms is out of range; use 1s to 24h0m0s (default 5m0s)"},
		"interval too long": {"kubernetes: {kubeconfig: /k}\nsigners: {certManager: {enabled: true, healthCheckInterval: 2d}}",
			"signers.certManager.healthCheckInterval: 48h0m0s is out of range"},
		"no cluster": {"signers: {certManager: {enabled: true}}",
			"signers: the Kubernetes signers need a cluster: set kubernetes.kubeconfig or kubernetes.inCluster"},
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
