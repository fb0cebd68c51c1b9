package inventory_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/inventory"
)

func putIssuance(t *testing.T, st *boltstore.Store, n int, identity string, notAfter time.Time) {
	t.Helper()
	require.NoError(t, st.PutIssuance(context.Background(), store.Issuance{
		Serial: fmt.Sprintf("%040x", n), Identity: identity, NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter,
		Fingerprint: fmt.Sprintf("%064x", n), Profile: "classical", Requester: "grpc:test", Generation: 1, IssuedAt: notAfter.Add(-24 * time.Hour),
	}))
}

// Per namespace: identities with an unexpired certificate, their
// certificates, and the earliest of each identity's newest notAfter; the
// namespaces beyond MaxNamespaces (the latest to expire) are summed in
// _other, identities that are not Istio's Kubernetes ones are _unknown,
// expired records count nowhere, and the aggregate is reused for Refresh.
func TestWorkloads_PerNamespaceTopNAndOther(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	now := day0
	id := func(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
	putIssuance(t, st, 1, id("a", "one"), now.Add(2*time.Hour))
	putIssuance(t, st, 2, id("a", "one"), now.Add(14*time.Hour)) // renewed: its newest is what counts
	putIssuance(t, st, 3, id("a", "two"), now.Add(20*time.Hour))
	putIssuance(t, st, 4, id("b", "one"), now.Add(5*time.Hour))
	putIssuance(t, st, 5, id("c", "one"), now.Add(30*time.Hour))
	putIssuance(t, st, 6, "spiffe://cluster.local/custom/path", now.Add(10*time.Hour))
	putIssuance(t, st, 7, id("d", "gone"), now.Add(-time.Hour))

	clk := testclock.NewFakeClock(now)
	w := &inventory.Workloads{Index: st, MaxNamespaces: 2, Refresh: time.Minute, Clock: clk}
	got, err := w.Namespaces(context.Background())
	require.NoError(t, err)
	require.Equal(t, []inventory.NamespaceExpiry{
		{Namespace: "b", Identities: 1, Certificates: 1, EarliestLatest: now.Add(5 * time.Hour)},
		{Namespace: inventory.NamespaceUnknown, Identities: 1, Certificates: 1, EarliestLatest: now.Add(10 * time.Hour)},
		{Namespace: inventory.NamespaceOther, Identities: 3, Certificates: 4, EarliestLatest: now.Add(14 * time.Hour)},
	}, got)

	putIssuance(t, st, 8, id("b", "one"), now.Add(29*time.Hour))
	clk.Step(59 * time.Second)
	again, err := w.Namespaces(context.Background())
	require.NoError(t, err)
	require.Equal(t, got, again, "the aggregate is reused for Refresh")
	clk.Step(time.Second)
	got, err = w.Namespaces(context.Background())
	require.NoError(t, err)
	require.Equal(t, []inventory.NamespaceExpiry{
		{Namespace: inventory.NamespaceUnknown, Identities: 1, Certificates: 1, EarliestLatest: now.Add(10 * time.Hour)},
		{Namespace: "a", Identities: 2, Certificates: 3, EarliestLatest: now.Add(14 * time.Hour)},
		{Namespace: inventory.NamespaceOther, Identities: 2, Certificates: 3, EarliestLatest: now.Add(29 * time.Hour)},
	}, got, "b renewed: it moves to _other")

	want := fmt.Sprintf(`
# HELP meshca_workload_certificate_latest_not_after_min_timestamp_seconds For each workload identity the notAfter of its newest certificate; the earliest of these in the namespace, in seconds since the epoch (a workload whose newest certificate nears expiry failed to renew). Namespaces beyond inventory.workloads.maxNamespaces are summed in namespace="_other"; identities that are not spiffe://<td>/ns/<ns>/sa/<sa> in "_unknown".
# TYPE meshca_workload_certificate_latest_not_after_min_timestamp_seconds gauge
meshca_workload_certificate_latest_not_after_min_timestamp_seconds{namespace="_other"} %[1]d
meshca_workload_certificate_latest_not_after_min_timestamp_seconds{namespace="_unknown"} %[2]d
meshca_workload_certificate_latest_not_after_min_timestamp_seconds{namespace="a"} %[3]d
# HELP meshca_workload_certificates Unexpired workload certificates in meshca's issuance records, by namespace of their identity.
# TYPE meshca_workload_certificates gauge
meshca_workload_certificates{namespace="_other"} 3
meshca_workload_certificates{namespace="_unknown"} 1
meshca_workload_certificates{namespace="a"} 3
# HELP meshca_workload_identities Workload identities holding an unexpired certificate, by namespace.
# TYPE meshca_workload_identities gauge
meshca_workload_identities{namespace="_other"} 2
meshca_workload_identities{namespace="_unknown"} 1
meshca_workload_identities{namespace="a"} 2
# HELP meshca_workload_inventory_up Whether the last read of the workload inventory from the store succeeded (1) or not (0).
# TYPE meshca_workload_inventory_up gauge
meshca_workload_inventory_up 1
`, now.Add(29*time.Hour).Unix(), now.Add(10*time.Hour).Unix(), now.Add(14*time.Hour).Unix())
	require.NoError(t, testutil.CollectAndCompare(w.Collector(), strings.NewReader(want)))
}
