package inventory_test

import (
	"context"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/trustbundle/publish"
)

// meshcaBundleSelector selects signer's bundles as serve does.
func meshcaBundleSelector(signer string) inventory.BundleSelector {
	return inventory.BundleSelector{SignerName: signer, LabelSelector: publish.BundleLabelSelector(signer)}
}

func createBundle(ctx context.Context, t *testing.T, name, signer string, lbl map[string]string, pem []byte) {
	t.Helper()
	b := &certificatesv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: signer, TrustBundle: string(pem)},
	}
	if _, err := env.Client.CertificatesV1().ClusterTrustBundles().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

func bundleNames(t *testing.T, s inventory.Source) []string {
	t.Helper()
	certs, err := s.Certificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range certs {
		out = append(out, c.Name)
	}
	return out
}

// TestKube_OnlyMeshcasClusterTrustBundlesReachTheCache: of the bundles in a
// real cluster, only those linked to meshca's signer AND carrying its
// label are listed and watched. A trust-manager-style bundle of public
// roots (no signer, meshca's label copied), another signer's bundle with
// meshca's label, and a bundle of meshca's signer without its label are
// filtered by the apiserver: they are not in the informer caches, before
// or after the informers start, and so never in the metrics or the alerts.
func TestKube_OnlyMeshcasClusterTrustBundlesReachTheCache(t *testing.T) {
	ctx := testCtx(t)
	const signer = "meshca.io/inv-only"
	lbl := map[string]string{publish.LabelTrustBundle: "inv-only", publish.LabelManagedBy: publish.FieldManager}
	root := newCA(t, "meshca Root", 0x51, day0, day0.AddDate(10, 0, 0), nil)
	public := newCA(t, "Public Root CA", 0x0a, day0.AddDate(-19, 0, 0), day0.AddDate(6, 0, 0), nil)
	createBundle(ctx, t, publish.BundleName(signer), signer, lbl, pemOf(root))
	createBundle(ctx, t, "inv-only-trust-manager-public-bundle", "", lbl, pemOf(public))
	createBundle(ctx, t, "example.com:inv-only-other:roots", "example.com/inv-only-other", lbl, pemOf(public))
	createBundle(ctx, t, "meshca.io:inv-only:unlabelled", signer, nil, pemOf(public))

	k, err := inventory.NewKube(env.Client, "inv-only-none", "cacerts", []inventory.BundleSelector{meshcaBundleSelector(signer)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	k.Start(runCtx)
	if !k.WaitForSync(ctx) {
		t.Fatal("informers did not sync")
	}
	want := []string{publish.BundleName(signer)}
	if got := k.CachedBundleNames(); !slices.Equal(got, want) {
		t.Fatalf("cached bundles %q, want only meshca's %q", got, want)
	}
	if got := bundleNames(t, k.ClusterTrustBundles()); !slices.Equal(got, want) {
		t.Fatalf("reported bundles %q, want %q", got, want)
	}

	// Through the watch: a second foreign bundle never arrives; meshca's
	// per-root bundle (during a root rotation) does.
	createBundle(ctx, t, "inv-only-late-foreign", "", lbl, pemOf(public))
	perRoot := publish.RootBundleName(signer, "0123456789abcdef0123")
	createBundle(ctx, t, perRoot, signer, lbl, pemOf(root))
	want = []string{publish.BundleName(signer), perRoot}
	slices.Sort(want)
	var got []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = k.CachedBundleNames(); slices.Equal(got, want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("cached bundles %q, want %q", got, want)
	}
}

// TestKube_NoBundleSelectorWatchesNoBundles: with ClusterTrustBundles off
// (no signer), no bundle is watched and there is no bundle source.
func TestKube_NoBundleSelectorWatchesNoBundles(t *testing.T) {
	k, err := inventory.NewKube(env.Client, "inv-only-none", "cacerts", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := k.ClusterTrustBundles(); s != nil {
		t.Fatalf("a bundle source without a selector: %v", s.Name())
	}
}
