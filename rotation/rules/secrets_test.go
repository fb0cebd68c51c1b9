package rules

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/rotation/inventory"
)

// Scanned Secrets warn at the later of 30% of the lifetime and 7 days
// left, and are critical at the later of 10% and 3 days: a 24h workload
// certificate renewed at half its life never fires, one that was not
// renewed warns at 7.2h left and is critical at 2.4h; a 90-day one warns
// at 7 days. A namespace whose Secret is renewed is cleared.
func TestSecretsExpiring(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	var mu sync.Mutex
	agg := []inventory.SecretExpiry{
		{Namespace: "scan-a", Secrets: 3, NotBefore: T0, NotAfter: T0.Add(24 * time.Hour)},
		{Namespace: "scan-b", Secrets: 1, NotBefore: T0, NotAfter: T0.Add(90 * day)},
	}
	rule := &SecretsExpiring{Thresholds: DefaultThresholds(), Namespaces: func() ([]inventory.SecretExpiry, bool) {
		mu.Lock()
		defer mu.Unlock()
		return agg, true
	}}
	sw := startSweeper(t, clk, nil, rule)
	const a, b = "WorkloadSecretExpiring/namespace scan-a", "WorkloadSecretExpiring/namespace scan-b"
	sw.to(t, T0.Add(16*time.Hour))
	require.Empty(t, sw.firing(), "8h left of 24h")
	sw.to(t, T0.Add(17*time.Hour))
	require.Equal(t, map[string]string{a: "warning"}, sw.firing(), "7h left")
	st := firingState(t, sw.e, a)
	require.Equal(t, "In namespace scan-a, the first of 3 scanned Secrets' certificates expires at 2026-05-02T12:00:00Z (7h left).", st.Summary)
	require.Equal(t, "meshca does not write these Secrets: whoever does (istio-agent, cert-manager) has not renewed it; check its log.", st.Action)
	sw.to(t, T0.Add(22*time.Hour))
	require.Equal(t, map[string]string{a: "critical"}, sw.firing(), "2h left")
	mu.Lock()
	agg = []inventory.SecretExpiry{agg[1]}
	mu.Unlock()
	sw.to(t, T0.Add(23*time.Hour))
	require.Empty(t, sw.firing())
	sw.to(t, T0.Add(83*day-time.Hour))
	require.Empty(t, sw.firing())
	sw.to(t, T0.Add(83*day))
	require.Equal(t, map[string]string{b: "warning"}, sw.firing())
}
