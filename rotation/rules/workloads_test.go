package rules

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/rotation/inventory"
)

// A namespace whose earliest newest-certificate expires within the window
// fires (its workloads did not renew); a renewal clears it, and a failed
// read of the inventory clears nothing.
func TestWorkloadsNotRenewed(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	var mu sync.Mutex
	agg := []inventory.NamespaceExpiry{
		{Namespace: "payments", Identities: 4, Certificates: 9, EarliestLatest: T0.Add(9 * time.Hour)},
		{Namespace: inventory.NamespaceOther, Identities: 400, Certificates: 800, EarliestLatest: T0.Add(20 * time.Hour)},
	}
	var readErr error
	rule := &WorkloadsNotRenewed{Window: 6 * time.Hour, Namespaces: func(context.Context) ([]inventory.NamespaceExpiry, error) {
		mu.Lock()
		defer mu.Unlock()
		return agg, readErr
	}}
	sw := startSweeper(t, clk, nil, rule)
	sw.to(t, T0.Add(2*time.Hour))
	require.Empty(t, sw.firing())
	sw.to(t, T0.Add(3*time.Hour))
	const key = "WorkloadCertificatesNotRenewed/namespace payments"
	require.Equal(t, map[string]string{key: "warning"}, sw.firing())
	st := firingState(t, sw.e, key)
	require.Equal(t, "In namespace payments, the newest certificate of at least one of 4 workload identities expires at 2026-05-01T21:00:00Z (6h left): it has not renewed (or the workload was removed).", st.Summary)
	require.Equal(t, "meshca issues a certificate whenever the workload asks; check the workload's istio-agent (or ztunnel) log and its access to meshca's Istio endpoint.", st.Action)
	mu.Lock()
	readErr = errors.New("store closed")
	mu.Unlock()
	sw.to(t, T0.Add(4*time.Hour))
	require.Equal(t, map[string]string{key: "warning"}, sw.firing())
	mu.Lock()
	readErr = nil
	agg = agg[1:]
	mu.Unlock()
	sw.to(t, T0.Add(5*time.Hour))
	require.Empty(t, sw.firing())
}
