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

func TestServerLimits_DefaultsWhenUnset(t *testing.T) {
	cfg := config.Defaults(t.TempDir())
	require.NoError(t, cfg.Validate())
	l := cfg.Server.Limits
	require.Equal(t, 128<<10, l.MaxRecvMsgSize)
	require.Equal(t, 96<<10, l.MaxHeaderListSize)
	require.Equal(t, 16, l.MaxConcurrentStreams)
	require.Equal(t, 1024, l.MaxConnections)
	require.Equal(t, 64, l.MaxConnectionsPerAddress)
	require.Equal(t, 64<<10, l.InitialWindowSize)
	require.Equal(t, 256<<10, l.InitialConnWindowSize)
	require.Equal(t, 5*time.Second, l.HandshakeTimeout.Duration)
	require.Equal(t, 64, l.OpsMaxConnections)
	require.Equal(t, 10*time.Second, l.OpsReadTimeout.Duration)
	require.Equal(t, 30*time.Second, l.OpsWriteTimeout.Duration)
	require.Equal(t, time.Minute, l.OpsIdleTimeout.Duration)
	require.Equal(t, 30*time.Second, l.MaxRequestTimeout.Duration)
	require.Equal(t, 30*time.Second, l.KeepaliveTime.Duration)
	require.Equal(t, 10*time.Second, l.KeepaliveTimeout.Duration)
	require.Equal(t, 15*time.Second, l.KeepaliveMinTime.Duration)
	require.Equal(t, 5*time.Minute, l.MaxConnectionIdle.Duration)
	require.Equal(t, 30*time.Minute, l.MaxConnectionAge.Duration)
	require.Equal(t, 10*time.Second, l.MaxConnectionAgeGrace.Duration)
	require.Equal(t, 10, l.MaxStreamResetsPerSecond)
	require.Equal(t, 100, l.MaxStreamResetBurst)
}

// parseLimits parses and validates a minimal configuration with the given
// server.limits lines (each indented by four spaces).
func parseLimits(t *testing.T, limits string) (*config.Config, error) {
	t.Helper()
	cfg, err := config.Parse([]byte("root: {file: {rootCert: r.pem, rootKey: r.key}}\nkeyStore: {dir: keys}\nstore: {path: s.db}\nserver:\n  limits:\n" + limits))
	require.NoError(t, err)
	return cfg, cfg.Validate()
}

// The reset burst's default follows maxConcurrentStreams, so that raising
// the streams alone (--max-concurrent-streams) still validates; a burst set
// below them is refused.
func TestServerLimits_TheResetBurstHoldsEveryStreamInFlight(t *testing.T) {
	parse := func(limits string) (*config.Config, error) { return parseLimits(t, limits) }
	cfg, err := parse("    maxConcurrentStreams: 200\n")
	require.NoError(t, err)
	require.Equal(t, 200, cfg.Server.Limits.MaxStreamResetBurst)
	_, err = parse("    maxConcurrentStreams: 200\n    maxStreamResetBurst: 150\n")
	require.ErrorContains(t, err, "server.limits.maxStreamResetBurst: 150 is out of range; use maxConcurrentStreams (200), so that a client may cancel every request it has in flight, to 1048576 (default the larger of 100 and maxConcurrentStreams)")
	_, err = parse("    maxStreamResetsPerSecond: -1\n")
	require.ErrorContains(t, err, "server.limits.maxStreamResetsPerSecond: -1 is out of range; use 1 to 1048576 (default 10)")
}

// The new-connection burst per address defaults to maxConnectionsPerAddress,
// so that an address may open its whole share at once; a rate or burst
// below 1 is refused.
func TestServerLimits_TheNewConnectionBurstDefaultsToAnAddresssShare(t *testing.T) {
	parse := func(limits string) (*config.Config, error) { return parseLimits(t, limits) }
	cfg, err := parse("    maxConnectionsPerAddress: 200\n")
	require.NoError(t, err)
	require.Equal(t, 200, cfg.Server.Limits.MaxNewConnectionBurstPerAddress)
	require.Equal(t, 10, cfg.Server.Limits.MaxNewConnectionsPerSecondPerAddress)
	// Above the burst's range, the default is its top, and only
	// maxConnectionsPerAddress is the operator's to answer for.
	cfg, err = parse("    maxConnectionsPerAddress: 2000000\n    maxConnections: 3000000\n")
	require.NoError(t, err)
	require.Equal(t, 1<<20, cfg.Server.Limits.MaxNewConnectionBurstPerAddress)
	cfg, err = parse("    maxNewConnectionsPerSecondPerAddress: 3\n    maxNewConnectionBurstPerAddress: 7\n")
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Server.Limits.MaxNewConnectionsPerSecondPerAddress)
	require.Equal(t, 7, cfg.Server.Limits.MaxNewConnectionBurstPerAddress)
	_, err = parse("    maxNewConnectionsPerSecondPerAddress: -1\n")
	require.ErrorContains(t, err, "server.limits.maxNewConnectionsPerSecondPerAddress: -1 is out of range; use 1 to 1048576 (default 10)")
	_, err = parse("    maxNewConnectionBurstPerAddress: -5\n")
	require.ErrorContains(t, err, "server.limits.maxNewConnectionBurstPerAddress: -5 is out of range; use 1 to 1048576 (default maxConnectionsPerAddress, 64)")
}

func TestServerLimits_ParsedAndValidated(t *testing.T) {
	cfg, err := config.Parse([]byte(`
root: {file: {rootCert: r.pem, rootKey: r.key}}
keyStore: {dir: keys}
store: {path: s.db}
server:
  limits:
    maxRecvMsgSize: 262144
    maxConnectionAge: 1h
`))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Equal(t, 256<<10, cfg.Server.Limits.MaxRecvMsgSize)
	require.Equal(t, time.Hour, cfg.Server.Limits.MaxConnectionAge.Duration)
	require.Equal(t, 16, cfg.Server.Limits.MaxConcurrentStreams, "unset keys keep their default")

	for yaml, want := range map[string]string{
		"maxRecvMsgSize: 1024":         "server.limits.maxRecvMsgSize: 1024 is out of range; use 73728 to 4194304 bytes",
		"maxRecvMsgSize: 8388608":      "server.limits.maxRecvMsgSize: 8388608 is out of range",
		"maxHeaderListSize: 100":       "server.limits.maxHeaderListSize: 100 is out of range",
		"maxConcurrentStreams: -1":     "server.limits.maxConcurrentStreams: -1 is out of range",
		"maxConnections: -5":           "server.limits.maxConnections: -5 must be positive",
		"handshakeTimeout: 10m":        "server.limits.handshakeTimeout: 10m0s is out of range; use 100ms to 2m0s",
		"maxConnectionAge: 500ms":      "server.limits.maxConnectionAge: 500ms is out of range",
		"keepaliveMinTime: -1s":        "server.limits.keepaliveMinTime: -1s is out of range",
		"maxRequestTimeout: 1h":        "server.limits.maxRequestTimeout: 1h0m0s is out of range",
		"maxConnectionAgeGrace: 2h":    "server.limits.maxConnectionAgeGrace: 2h0m0s is out of range",
		"maxConnectionIdle: 48h":       "server.limits.maxConnectionIdle: 48h0m0s is out of range",
		"keepaliveTime: 100ms":         "server.limits.keepaliveTime: 100ms is out of range",
		"keepaliveTimeout: 2h":         "server.limits.keepaliveTimeout: 2h0m0s is out of range",
		"maxConnectionsPerAddress: -1": "server.limits.maxConnectionsPerAddress: -1 must be positive; raise it when clients share a source address behind a NAT or proxy",
		"initialWindowSize: 1024":      "server.limits.initialWindowSize: 1024 is out of range; use 65536 to 16777216 bytes",
		"initialConnWindowSize: 4096":  "server.limits.initialConnWindowSize: 4096 is out of range; use initialWindowSize (65536) to 16777216 bytes",
		"opsMaxConnections: -3":        "server.limits.opsMaxConnections: -3 is out of range",
		"opsIdleTimeout: 2h":           "server.limits.opsIdleTimeout: 2h0m0s is out of range",
		"opsReadTimeout: 1ms":          "server.limits.opsReadTimeout: 1ms is out of range",
		"opsWriteTimeout: 1h":          "server.limits.opsWriteTimeout: 1h0m0s is out of range",
	} {
		cfg, err := config.Parse([]byte("root: {file: {rootCert: r.pem, rootKey: r.key}}\nkeyStore: {dir: keys}\nstore: {path: s.db}\nserver:\n  limits:\n    " + yaml + "\n"))
		require.NoError(t, err, yaml)
		err = cfg.Validate()
		require.Error(t, err, yaml)
		require.Contains(t, err.Error(), want)
	}
}

func TestAdminSocket_DefaultsNextToTheStoreAndIsValidated(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Defaults(dir)
	require.Equal(t, filepath.Join(dir, "admin.sock"), cfg.Server.AdminSocket)
	require.NoError(t, cfg.Validate())

	f := filepath.Join(dir, "meshca.yaml")
	require.NoError(t, os.WriteFile(f, []byte("root: {file: {rootCert: r.pem, rootKey: r.key}}\nkeyStore: {dir: keys}\nstore: {path: data/s.db}\n"), 0o600))
	cfg, err := config.Load(f)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "data", "admin.sock"), cfg.Server.AdminSocket, "relative to the file, like store.path")

	cfg.Server.AdminSocket = "/" + strings.Repeat("a", 103)
	require.ErrorContains(t, cfg.Validate(), "server.adminSocket: \""+cfg.Server.AdminSocket+"\" is 104 bytes; a Unix socket path holds at most 103: choose a shorter path")
	cfg.Server.AdminSocket = "/run/meshca/"
	require.ErrorContains(t, cfg.Validate(), `server.adminSocket: "/run/meshca/" is not a file path`)
}
