package publish

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/bundleversion"
)

func TestDiscoverBundleVersion_PrefersV1(t *testing.T) {
	v, err := bundleversion.Discover(meshcaClient(t).Discovery())
	require.NoError(t, err)
	require.Equal(t, "v1", v)
}

// On 1.33–1.36 only v1beta1 is served; the test apiserver serves both, so
// the v1beta1 path is forced here.
func TestPublisher_WritesV1beta1ClusterTrustBundles(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "beta")
	p := startPublisher(t, config.TrustBundleConfig{}, WithClusterTrustBundleVersion("v1beta1"))
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots}))
	want := string(root.EncodePEM(ca.root))
	waitFor(t, restoreTime, "v1beta1 bundle", func() error {
		b, err := env.Client.CertificatesV1beta1().ClusterTrustBundles().Get(ctx, BundleName(workload), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if b.Spec.TrustBundle != want {
			return fmt.Errorf("bundle holds %d bytes, want %d", len(b.Spec.TrustBundle), len(want))
		}
		return nil
	})
	require.NoError(t, env.Client.CertificatesV1beta1().ClusterTrustBundles().Delete(ctx, BundleName(workload), metav1.DeleteOptions{}))
	waitFor(t, restoreTime, "v1beta1 bundle restored", func() error {
		_, err := env.Client.CertificatesV1beta1().ClusterTrustBundles().Get(ctx, BundleName(workload), metav1.GetOptions{})
		return err
	})
}

func TestNew_RejectsUnknownBundleVersionAndBadSelector(t *testing.T) {
	_, err := New(env.Client, config.TrustBundleConfig{}, WithClusterTrustBundleVersion("v2"))
	require.ErrorContains(t, err, `"v2" is not v1 or v1beta1`)
	_, err = New(env.Client, config.TrustBundleConfig{NamespaceSelector: "a in (b"})
	require.ErrorContains(t, err, "trustBundle.namespaceSelector")
}
