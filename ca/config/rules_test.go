package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestRulesAndInventoryConfig_Defaults(t *testing.T) {
	c, err := config.Parse([]byte("trustDomain: cluster.local\n"))
	require.NoError(t, err)
	r := c.Alerts.Rules
	require.Equal(t, time.Minute, r.Interval.Duration)
	require.Equal(t, 0.3, r.Expiry.WarningFraction)
	require.Equal(t, 7*24*time.Hour, r.Expiry.WarningBefore.Duration)
	require.Equal(t, 3*24*time.Hour, r.Expiry.CriticalBefore.Duration)
	require.Equal(t, 5*time.Minute, r.RootSourceUnhealthyFor.Duration)
	require.Equal(t, 6*time.Hour, r.WorkloadRenewalWindow.Duration)
	w := c.Inventory.Workloads
	require.True(t, w.IsEnabled())
	require.Equal(t, 50, w.MaxNamespaces)
	require.Equal(t, time.Minute, w.Refresh.Duration)
	s := c.Inventory.SecretScan
	require.False(t, s.IsEnabled(), "the Secret scan is opt-in: it needs cluster-wide list/watch of Secrets")
	require.Equal(t, []config.SecretSelector{
		{Type: "istio.io/key-and-cert"},
		{Type: "kubernetes.io/tls", LabelSelector: "meshca.io/monitor=true"},
	}, s.Selectors)
	require.Equal(t, 50, s.MaxNamespaces)
}

func TestRulesAndInventoryConfig_SecretScanOptIn(t *testing.T) {
	c, err := config.Parse([]byte("inventory:\n  secretScan:\n    enabled: true\n"))
	require.NoError(t, err)
	require.True(t, c.Inventory.SecretScan.IsEnabled())
	require.Len(t, c.Inventory.SecretScan.Selectors, 2, "the default selectors apply once enabled")
}

func TestRulesAndInventoryConfig_Off(t *testing.T) {
	c, err := config.Parse([]byte("inventory:\n  workloads:\n    enabled: false\n  secretScan:\n    enabled: false\n"))
	require.NoError(t, err)
	require.False(t, c.Inventory.Workloads.IsEnabled())
	require.False(t, c.Inventory.SecretScan.IsEnabled())
}

func TestRulesAndInventoryConfig_ValidateNamesKeyAndFix(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"fraction": {"alerts:\n  rules:\n    expiry:\n      warningFraction: 1.5\n",
			"alerts.rules.expiry.warningFraction: 1.5 is out of range; use a fraction of the lifetime left between 0 and 1 (default 0.3)"},
		"critical after warning": {"alerts:\n  rules:\n    expiry:\n      warningBefore: 2d\n      criticalBefore: 3d\n",
			"alerts.rules.expiry.criticalBefore: 72h0m0s is longer than alerts.rules.expiry.warningBefore (48h0m0s); a certificate warns before it is critical"},
		"interval": {"alerts:\n  rules:\n    interval: 1s\n",
			"alerts.rules.interval: 1s is too short; use at least 10s (default 1m0s)"},
		"namespaces": {"inventory:\n  workloads:\n    maxNamespaces: 100000\n",
			"inventory.workloads.maxNamespaces: 100000 is out of range; use 1 to 1000 (default 50): each namespace is a metric series"},
		"selector": {"inventory:\n  secretScan:\n    selectors:\n      - type: kubernetes.io/tls\n        labelSelector: \"a in (\"\n",
			"inventory.secretScan.selectors[0].labelSelector: "},
		"no type": {"inventory:\n  secretScan:\n    selectors:\n      - labelSelector: a=b\n",
			"inventory.secretScan.selectors[0].type: must be set (e.g. istio.io/key-and-cert or kubernetes.io/tls): the scan reads only Secrets of the types named"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.yaml))
			if err == nil {
				err = c.Validate()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
