package admin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCertHealth_Thresholds(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cases := []struct {
		name                string
		notBefore, notAfter time.Time
		want                string
	}{
		// A 20-day certificate: 30% is 6 days, so 7 days is the looser threshold.
		{"20 days, 8 left", now.Add(-12 * day), now.Add(8 * day), HealthOK},
		{"20 days, 7 left exactly", now.Add(-13 * day), now.Add(7 * day), HealthOK},
		{"20 days, 7 less a second", now.Add(-13 * day), now.Add(7*day - time.Second), HealthWarning},
		{"20 days, 3 left exactly", now.Add(-17 * day), now.Add(3 * day), HealthWarning},
		{"20 days, 3 less a second", now.Add(-17 * day), now.Add(3*day - time.Second), HealthCritical},
		// A year-long certificate: 30% is 109.5 days.
		{"year, 110 left", now.Add(-255 * day), now.Add(110 * day), HealthOK},
		{"year, 109 left", now.Add(-256 * day), now.Add(109 * day), HealthWarning},
		{"expires now", now.Add(-365 * day), now, HealthExpired},
		{"expired", now.Add(-400 * day), now.Add(-day), HealthExpired},
		// A 100-day certificate: 30% is 30 days.
		{"100 days, 31 left", now.Add(-69 * day), now.Add(31 * day), HealthOK},
		{"100 days, 30 left", now.Add(-70 * day), now.Add(30 * day), HealthOK},
		{"100 days, 29 left", now.Add(-71 * day), now.Add(29 * day), HealthWarning},
		// A 10-year root with 2 years left is fine; with 2.9 years left it warns.
		{"root, 2.9 years of 10", now.Add(-(3650 - 1058) * day), now.Add(1058 * day), HealthWarning},
		{"root, 4 years of 10", now.Add(-(3650 - 1460) * day), now.Add(1460 * day), HealthOK},
	}
	for _, c := range cases {
		require.Equal(t, c.want, CertHealth(c.notBefore, c.notAfter, now), c.name)
	}
}

func TestCRLHealth_StaleOncePastNextUpdate(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	require.Equal(t, HealthOK, CRLHealth(now.Add(time.Hour), now))
	require.Equal(t, HealthOK, CRLHealth(now, now))
	require.Equal(t, HealthStale, CRLHealth(now.Add(-time.Second), now))
	require.Equal(t, HealthOK, CRLHealth(time.Time{}, now))
}
