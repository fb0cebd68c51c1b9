package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestAudit_OffByDefault(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.False(t, c.Audit.Enabled())
}

func TestAudit_Defaults(t *testing.T) {
	c, err := config.Parse([]byte(mergeYAML(t, minimal, "audit: {file: /var/lib/meshca/audit/audit.log}")))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.True(t, c.Audit.Enabled())
	require.Equal(t, config.AuditConfig{File: "/var/lib/meshca/audit/audit.log", MaxSizeMiB: 100, MaxFiles: 10,
		CheckpointInterval: config.Duration{Duration: time.Minute}, FlushInterval: config.Duration{Duration: 200 * time.Millisecond}}, c.Audit)
}

func TestAudit_ValidationNamesTheKeyAndTheFix(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"a directory":              {"audit: {file: /var/lib/meshca/audit/}", `audit.file: "/var/lib/meshca/audit/" is not a file name`},
		"size too large":           {"audit: {file: /a/audit.log, maxSizeMiB: 20000}", "audit.maxSizeMiB: 20000 is out of range; use 1 to 10240"},
		"negative size":            {"audit: {file: /a/audit.log, maxSizeMiB: -1}", "audit.maxSizeMiB: -1 is out of range"},
		"negative files":           {"audit: {file: /a/audit.log, maxFiles: -2}", "audit.maxFiles: -2 is out of range"},
		"checkpoint too often":     {"audit: {file: /a/audit.log, checkpointInterval: 100ms}", "audit.checkpointInterval: 100ms is out of range; use 1s to 24h0m0s"},
		"flush after checkpoint":   {"audit: {file: /a/audit.log, checkpointInterval: 2s, flushInterval: 5s}", "audit.flushInterval: 5s is out of range"},
		"flush interval too short": {"audit: {file: /a/audit.log, flushInterval: 1ms}", "audit.flushInterval: 1ms is out of range; use 10ms to 10s"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(mergeYAML(t, minimal, tc.yaml)))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
