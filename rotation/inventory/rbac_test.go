package inventory_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/test/kubeenv"
)

// TestKube_WorksWithTheShippedLeastPrivilegeRBAC: authenticated as the
// ServiceAccount istio-system/meshca with only deploy/rbac/trustbundle.yaml
// bound (cacerts by resourceNames), the informers sync: the Secret is
// listed and watched by a metadata.name field selector, which RBAC grants
// for a resourceNames rule, and another Secret stays out of reach.
func TestKube_WorksWithTheShippedLeastPrivilegeRBAC(t *testing.T) {
	ctx := testCtx(t)
	const ns = "istio-system"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	root, err := kubeenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.ApplyYAMLFile(ctx, filepath.Join(root, "deploy", "rbac", "trustbundle.yaml")); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t, "RBAC Root", 0x5a, day0, day0.AddDate(0, 0, 10), nil)
	for _, name := range []string{"cacerts", "other"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"root-cert.pem": pemOf(ca)}}
		if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, client, err := env.ClientAs(ctx, ns, "meshca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Secrets(ns).Get(ctx, "other", metav1.GetOptions{}); err == nil {
		t.Fatal("the ServiceAccount reads Secret other: the RBAC is wider than the test assumes")
	}
	k, err := inventory.NewKube(client, ns, "cacerts", []inventory.BundleSelector{meshcaBundleSelector("meshca.io/workload")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	k.Start(runCtx)
	if !k.WaitForSync(ctx) {
		t.Fatal("informers did not sync with the shipped RBAC")
	}
	want := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer="CN=RBAC Root,O=meshca-test",kind="cacerts",name="cacerts",namespace="istio-system",serial="5a"} 1768089600
# HELP meshca_inventory_source_up Whether the inventory source (ca, cacerts, clustertrustbundles) answered the last scrape completely (1) or not (0: not synced, unreadable, or a certificate that does not parse).
# TYPE meshca_inventory_source_up gauge
meshca_inventory_source_up{source="cacerts"} 1
`
	if err := testutil.CollectAndCompare(inventory.NewCollector([]inventory.Source{k.CACerts()}), strings.NewReader(want),
		"meshca_certificate_not_after_timestamp_seconds", "meshca_inventory_source_up"); err != nil {
		t.Fatal(err)
	}
}
