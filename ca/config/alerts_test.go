package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestAlertsConfig_DefaultsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshca.yaml")
	require.NoError(t, os.WriteFile(path, []byte("alerts:\n  slack:\n    webhookURLFile: secrets/slack-url\n  webhook:\n    urlFile: /etc/meshca/alerts/url\n"), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	require.True(t, c.Alerts.Enabled())
	require.Equal(t, filepath.Join(dir, "secrets/slack-url"), c.Alerts.Slack.WebhookURLFile)
	require.Equal(t, "/etc/meshca/alerts/url", c.Alerts.Webhook.URLFile)
	require.Equal(t, 4*time.Hour, c.Alerts.RepeatInterval.Duration)

	var off config.AlertsConfig
	off.Init()
	require.False(t, off.Enabled(), "alert notifications are opt-in")
}

func TestAlertsConfig_ValidateNamesKeyAndFix(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want string
	}{
		"repeat too short": {"alerts:\n  repeatInterval: 30s\n  slack:\n    webhookURLFile: /run/slack\n",
			"alerts.repeatInterval: 30s is too short; use at least 1m0s (default 4h0m0s)"},
		"URL instead of a file": {"alerts:\n  slack:\n    webhookURLFile: https://hooks.slack.com/services/T0/B0/secret\n",
			"alerts.slack.webhookURLFile: is a URL; put the URL in a file (a mounted Secret) and give the file's path here: the URL is a credential"},
		"webhook URL instead of a file": {"alerts:\n  webhook:\n    urlFile: http://am.example:9093/hook\n",
			"alerts.webhook.urlFile: is a URL; put the URL in a file"},
		"unknown key": {"alerts:\n  slack:\n    webhookURL: https://hooks.slack.com/services/T0/B0/secret\n",
			`unknown field "alerts.slack.webhookURL"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.yaml))
			if err == nil {
				err = c.Validate()
			}
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "secret", "the URL is not repeated in the error")
		})
	}
}
