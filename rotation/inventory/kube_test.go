package inventory_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/trustbundle/publish"
)

var env *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &env)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestKube_ReportsCACertsSecretAndClusterTrustBundles: the certificates
// of a cacerts Secret written by someone else (ca-cert.pem repeated at the
// head of cert-chain.pem is one series; ca-key.pem is never read) and of
// every ClusterTrustBundle, read from the informers of a real apiserver.
// A Secret of another name in the namespace is not reported, and a
// change to the Secret shows in the next scrape.
func TestKube_ReportsCACertsSecretAndClusterTrustBundles(t *testing.T) {
	ctx := testCtx(t)
	const ns = "inv-istio-system"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	root := newCA(t, "Other Root", 0x7f, day0, day0.AddDate(0, 0, 3650), nil)
	inter := newCA(t, "Other Intermediate", 0x1234, day0.AddDate(0, 0, 1), day0.AddDate(0, 0, 365), root)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cacerts"},
		Data: map[string][]byte{
			"ca-cert.pem":    pemOf(inter),
			"ca-key.pem":     []byte("not a key, and never read"),
			"cert-chain.pem": pemOf(inter, root),
			"root-cert.pem":  pemOf(root),
		},
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	decoy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-cacerts"}, Data: map[string][]byte{"ca-cert.pem": pemOf(root)}}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, decoy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bundleRoot := newCA(t, "Bundle Root", 0x42, day0.AddDate(0, 0, 2), day0.AddDate(0, 0, 30), nil)
	const signer = "meshca.io/inv-test"
	createBundle(ctx, t, publish.BundleName(signer), signer, map[string]string{publish.LabelTrustBundle: "inv-test"}, pemOf(bundleRoot))

	k, err := inventory.NewKube(env.Client, ns, "cacerts", []inventory.BundleSelector{meshcaBundleSelector(signer)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	k.Start(runCtx)
	if !k.WaitForSync(ctx) {
		t.Fatal("informers did not sync")
	}
	c := inventory.NewCollector([]inventory.Source{k.CACerts(), k.ClusterTrustBundles()})

	// day0 is 1767225600; 2, 30, 1, 365 and 3650 days later are below.
	want := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Bundle Root,O=meshca-test",kind="clustertrustbundle",name="meshca.io:inv-test:roots",namespace="",serial="42"} 1769817600
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Other Root,O=meshca-test",kind="cacerts",name="cacerts",namespace="inv-istio-system",serial="1234"} 1798761600
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Other Root,O=meshca-test",kind="cacerts",name="cacerts",namespace="inv-istio-system",serial="7f"} 2082585600
# HELP meshca_certificate_not_before_timestamp_seconds The notBefore of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind and holding object.
# TYPE meshca_certificate_not_before_timestamp_seconds gauge
meshca_certificate_not_before_timestamp_seconds{issuer="CN=Bundle Root,O=meshca-test",kind="clustertrustbundle",name="meshca.io:inv-test:roots",namespace="",serial="42"} 1767398400
meshca_certificate_not_before_timestamp_seconds{issuer="CN=Other Root,O=meshca-test",kind="cacerts",name="cacerts",namespace="inv-istio-system",serial="1234"} 1767312000
meshca_certificate_not_before_timestamp_seconds{issuer="CN=Other Root,O=meshca-test",kind="cacerts",name="cacerts",namespace="inv-istio-system",serial="7f"} 1767225600
# HELP meshca_inventory_source_up Whether the inventory source (ca, cacerts, clustertrustbundles) answered the last scrape completely (1) or not (0: not synced, unreadable, or a certificate that does not parse).
# TYPE meshca_inventory_source_up gauge
meshca_inventory_source_up{source="cacerts"} 1
meshca_inventory_source_up{source="clustertrustbundles"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	// Someone replaces the Secret with a root only and a certificate that
	// does not parse: the next scrapes (once the watch delivers it) show
	// the root and the source down.
	secret.Data = map[string][]byte{"root-cert.pem": append(pemOf(root), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")...)}
	if _, err := env.Client.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want2 := `
# HELP meshca_certificate_not_after_timestamp_seconds The notAfter of a CA certificate meshca publishes or finds in the cluster, in seconds since the epoch, by kind (root, intermediate, cacerts, clustertrustbundle) and holding object.
# TYPE meshca_certificate_not_after_timestamp_seconds gauge
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Bundle Root,O=meshca-test",kind="clustertrustbundle",name="meshca.io:inv-test:roots",namespace="",serial="42"} 1769817600
meshca_certificate_not_after_timestamp_seconds{issuer="CN=Other Root,O=meshca-test",kind="cacerts",name="cacerts",namespace="inv-istio-system",serial="7f"} 2082585600
# HELP meshca_inventory_source_up Whether the inventory source (ca, cacerts, clustertrustbundles) answered the last scrape completely (1) or not (0: not synced, unreadable, or a certificate that does not parse).
# TYPE meshca_inventory_source_up gauge
meshca_inventory_source_up{source="cacerts"} 0
meshca_inventory_source_up{source="clustertrustbundles"} 1
`
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if lastErr = testutil.CollectAndCompare(c, strings.NewReader(want2),
			"meshca_certificate_not_after_timestamp_seconds", "meshca_inventory_source_up"); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatal(lastErr)
	}
}
