package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

func TestLeaderElection_DefaultsAndTimings(t *testing.T) {
	c, err := config.Parse([]byte("trustBundle:\n  istiodNamespace: mesh\n"))
	require.NoError(t, err)
	le := c.Signers.Controllers.LeaderElection
	require.True(t, le.On())
	require.Equal(t, "mesh", le.Namespace, "the Lease lives in istiod's namespace by default")
	require.Equal(t, config.DefaultLeaseName, le.LeaseName)
	require.Equal(t, config.DefaultLeaseDuration, le.LeaseDuration.Duration)
	require.Equal(t, config.DefaultRenewDeadline, le.RenewDeadline.Duration)
	require.Equal(t, config.DefaultRetryPeriod, le.RetryPeriod.Duration)

	valid := func(le config.LeaderElectionConfig) error {
		c := config.Defaults(t.TempDir())
		c.Signers.Controllers.LeaderElection = le
		c.Init()
		return c.Validate()
	}
	d := func(s string) config.Duration {
		v, err := config.ParseDuration(s)
		require.NoError(t, err)
		return config.Duration{Duration: v}
	}
	require.NoError(t, valid(config.LeaderElectionConfig{LeaseDuration: d("4s"), RenewDeadline: d("3s"), RetryPeriod: d("500ms")}))
	for want, le := range map[string]config.LeaderElectionConfig{
		"signers.controllers.leaderElection.renewDeadline: 10s must be shorter than leaseDuration (5s)": {LeaseDuration: d("5s")},
		"signers.controllers.leaderElection.retryPeriod: 3s is too long for renewDeadline 3s":           {RenewDeadline: d("3s"), RetryPeriod: d("3s")},
		"leaseDuration, renewDeadline and retryPeriod must be positive":                                 {RetryPeriod: d("-1s")},
	} {
		require.ErrorContains(t, valid(le), want)
	}
	off := false
	require.NoError(t, valid(config.LeaderElectionConfig{Enabled: &off, LeaseDuration: d("1s")}), "timings do not matter without leader election")
}
