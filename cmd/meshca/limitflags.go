package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca/config"
)

// addLimitFlags adds flags for the most tuned server.limits keys.
func addLimitFlags(cmd *cobra.Command, l *config.LimitsConfig) {
	f := cmd.Flags()
	f.IntVar(&l.MaxRecvMsgSize, "max-recv-msg-size", 0, fmt.Sprintf("server.limits.maxRecvMsgSize: largest request in bytes (default %d)", config.DefaultMaxRecvMsgSize))
	f.IntVar(&l.MaxConcurrentStreams, "max-concurrent-streams", 0, fmt.Sprintf("server.limits.maxConcurrentStreams: requests in flight per connection (default %d)", config.DefaultMaxConcurrentStreams))
	f.IntVar(&l.MaxConnections, "max-connections", 0, fmt.Sprintf("server.limits.maxConnections: open connections (default %d)", config.DefaultMaxConnections))
	f.DurationVar(&l.MaxConnectionAge.Duration, "max-connection-age", 0, fmt.Sprintf("server.limits.maxConnectionAge: close connections after this long (default %s)", config.DefaultMaxConnectionAge))
}

// applyLimitFlags overrides the configuration with the flags that were set;
// validation follows. A flag set to 0 means the default, as 0 or an unset
// key does in the file.
func applyLimitFlags(cmd *cobra.Command, dst *config.LimitsConfig, flags config.LimitsConfig) {
	defer dst.Init()
	set := cmd.Flags().Changed
	if set("max-recv-msg-size") {
		dst.MaxRecvMsgSize = flags.MaxRecvMsgSize
	}
	if set("max-concurrent-streams") {
		dst.MaxConcurrentStreams = flags.MaxConcurrentStreams
	}
	if set("max-connections") {
		dst.MaxConnections = flags.MaxConnections
	}
	if set("max-connection-age") {
		dst.MaxConnectionAge = flags.MaxConnectionAge
	}
}
