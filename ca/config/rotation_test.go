package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestRotationConfig_RootWaits(t *testing.T) {
	c, err := config.Parse([]byte("rotation:\n  root:\n    workloadsMinWait: 5m\n    workloadsMaxWait: 6h\n    ttlMaxWait: 2d\n"))
	require.NoError(t, err)
	d := config.Defaults(t.TempDir())
	d.Rotation = c.Rotation
	require.NoError(t, d.Validate())
	require.Equal(t, config.RootRotationConfig{WorkloadsMinWait: config.Duration{Duration: 5 * time.Minute},
		WorkloadsMaxWait: config.Duration{Duration: 6 * time.Hour}, TTLMaxWait: config.Duration{Duration: 48 * time.Hour}}, c.Rotation.Root)

	for yaml, want := range map[string]string{
		"rotation:\n  root:\n    workloadsMinWait: 2h\n    workloadsMaxWait: 1h\n": "rotation.root.workloadsMaxWait: 1h0m0s is shorter than rotation.root.workloadsMinWait 2h0m0s",
		"rotation:\n  root:\n    ttlMaxWait: -1h\n":                                "rotation.root.ttlMaxWait: -1h0m0s is negative",
		"rotation:\n  root:\n    minWait: 1h\n":                                    `unknown field "rotation.root.minWait"`,
	} {
		c, err := config.Parse([]byte(yaml))
		if err == nil {
			err = c.Validate()
		}
		require.ErrorContains(t, err, want)
	}
}
