package main

import (
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

// TestLimitFlags_ZeroMeansTheDefault: a limit flag set to 0 means the
// default, as 0 or an unset key does in the file. Before, serve refused
// "--max-connection-age 0" with "0s is out of range ... (0 means the
// default)".
func TestLimitFlags_ZeroMeansTheDefault(t *testing.T) {
	cfg := config.Defaults(t.TempDir())
	cfg.Server.Limits.MaxConnections = 77 // from the file
	cfg.Server.Limits.MaxConnectionAge = config.Duration{Duration: time.Hour}
	cfg.Server.Limits.Init()

	var flags config.LimitsConfig
	cmd := &cobra.Command{Run: func(*cobra.Command, []string) {}}
	addLimitFlags(cmd, &flags)
	require.NoError(t, cmd.ParseFlags([]string{"--max-connection-age=0", "--max-connections=0", "--max-concurrent-streams=5"}))
	applyLimitFlags(cmd, &cfg.Server.Limits, flags)

	require.Equal(t, config.DefaultMaxConnectionAge, cfg.Server.Limits.MaxConnectionAge.Duration)
	require.Equal(t, config.DefaultMaxConnections, cfg.Server.Limits.MaxConnections, "0 on the command line is the default, not the file's 77")
	require.Equal(t, 5, cfg.Server.Limits.MaxConcurrentStreams)
	require.Equal(t, config.DefaultMaxRecvMsgSize, cfg.Server.Limits.MaxRecvMsgSize, "not set: the file's (its default)")
	require.NoError(t, cfg.Validate())

	// A negative value is still refused.
	require.NoError(t, cmd.ParseFlags([]string{"--max-connections=-1"}))
	applyLimitFlags(cmd, &cfg.Server.Limits, flags)
	require.ErrorContains(t, cfg.Validate(), "server.limits.maxConnections: -1 must be positive")
}
