package publish

import (
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
)

// With one worker the queue is handled in order, so once a namespace
// created last has its ConfigMaps, every namespace seen before it has been
// decided: the absent ConfigMaps are absent for good, not late.
func TestPublisher_NewNamespaceGetsConfigMapsWithin5s_ExcludedAndUnselectedGetNone(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "N")
	crl := ca.crl(t, 1)
	cfg := config.TrustBundleConfig{
		NamespaceExclusions: append([]string{"ns-excluded"}, config.DefaultNamespaceExclusions...),
		NamespaceSelector:   "meshca-test/mesh!=off",
	}
	p := startPublisher(t, cfg, WithWorkers(1))
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, CRLs: crl}))
	rootPEM := string(root.EncodePEM(ca.root))
	waitFor(t, restoreTime, "root ConfigMap in default", wantConfigMap(t, "default", RootConfigMapName, rootConfigMapKey, rootPEM))

	createNamespace(t, "ns-excluded", nil)
	createNamespace(t, "ns-unselected", map[string]string{"meshca-test/mesh": "off"})
	createNamespace(t, "ns-new", nil)
	took := waitFor(t, restoreTime, "root ConfigMap in a new namespace",
		wantConfigMap(t, "ns-new", RootConfigMapName, rootConfigMapKey, rootPEM))
	waitFor(t, restoreTime, "CRL ConfigMap in a new namespace",
		wantConfigMap(t, "ns-new", config.DefaultCRLConfigMapName, crlConfigMapKey, string(crl)))
	t.Logf("new namespace got its ConfigMaps in %s", took)

	for _, ns := range append([]string{"ns-excluded", "ns-unselected"}, config.DefaultNamespaceExclusions...) {
		list, err := env.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, cm := range list.Items {
			require.NotContains(t, []string{RootConfigMapName, config.DefaultCRLConfigMapName}, cm.Name, "namespace %s must get no ConfigMaps", ns)
		}
	}

	// A namespace that starts matching the selector is served at once.
	n, err := env.Client.CoreV1().Namespaces().Get(ctx, "ns-unselected", metav1.GetOptions{})
	require.NoError(t, err)
	n.Labels["meshca-test/mesh"] = "on"
	_, err = env.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
	require.NoError(t, err)
	waitFor(t, restoreTime, "root ConfigMap once the namespace is selected",
		wantConfigMap(t, "ns-unselected", RootConfigMapName, rootConfigMapKey, rootPEM))
}
