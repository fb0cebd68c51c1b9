package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/inventory"
)

// TestRegisterInventory_ServesTheCAExpiryOfTheOpenedCA: without a cluster,
// serve's registry has the root and the active intermediate of the CA it
// opened, with their notAfter, a healthy store and its journal's metrics.
func TestRegisterInventory_ServesTheCAExpiryOfTheOpenedCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := runMeshca(t, "init", "--dir", dir)
	require.NoError(t, err)
	cfg := config.Defaults(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	rt, _, err := openCA(context.Background(), cfg, log, nil)
	require.NoError(t, err)
	defer rt.Close()

	parts, err := registerInventory(context.Background(), cfg, rt, nil, log, reg)
	require.NoError(t, err)
	require.NotNil(t, parts.workloads, "the workload inventory is on by default")

	m := rt.Authority.Material()
	root, inter := m.Bundle.Roots[0], m.Bundle.Cert
	want := fmt.Sprintf(`
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer=%q,kind="intermediate",name="gen-%d",namespace="",serial=%q} %d
meshca_certificate_not_after_timestamp_seconds{issuer=%q,kind="root",name="root",namespace="",serial=%q} %d
# HELP meshca_workload_inventory_up Whether the last read of the workload inventory from the store succeeded (1) or not (0).
# TYPE meshca_workload_inventory_up gauge
meshca_workload_inventory_up 1
# HELP meshca_store_healthy 1 while the record store accepts writes; 0 once it has failed closed (restart meshca after checking the disk).
# TYPE meshca_store_healthy gauge
meshca_store_healthy 1
`, inter.Issuer.String(), m.Generation, hex.EncodeToString(inter.SerialNumber.Bytes()), inter.NotAfter.Unix(),
		root.Issuer.String(), hex.EncodeToString(root.SerialNumber.Bytes()), root.NotAfter.Unix())
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"meshca_certificate_not_after_timestamp_seconds", "meshca_store_healthy", "meshca_workload_inventory_up"))
	// The embedded store's journal metrics are there too (values: boltstore's tests).
	n, err := testutil.GatherAndCount(reg, "meshca_store_journal_groups_total", "meshca_store_journal_records_total",
		"meshca_store_journal_transactions_total", "meshca_store_journal_waits_total", "meshca_store_journal_direct_io")
	require.NoError(t, err)
	require.Equal(t, 6, n)
}

// TestBundleSelectors_OnlyMeshcasSigners: the inventory watches the
// bundles of the signers meshca publishes for (with their labels), istiod's
// only when it publishes istiod's bundle, and none when ClusterTrustBundles
// are off.
func TestBundleSelectors_OnlyMeshcasSigners(t *testing.T) {
	cfg := config.Defaults(t.TempDir())
	require.Equal(t, []inventory.BundleSelector{{SignerName: "meshca.io/workload", LabelSelector: "meshca.io/trust-bundle=workload"}},
		bundleSelectors(cfg))
	cfg.TrustBundle.ClusterTrustBundles.IstiodBundle = true
	require.Equal(t, []inventory.BundleSelector{
		{SignerName: "meshca.io/workload", LabelSelector: "meshca.io/trust-bundle=workload"},
		{SignerName: "istio.io/istiod-ca", LabelSelector: "meshca.io/trust-bundle=istiod-ca"},
	}, bundleSelectors(cfg))
	off := false
	cfg.TrustBundle.ClusterTrustBundles.Enabled = &off
	require.Empty(t, bundleSelectors(cfg))
}
