package publish

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
)

// Anyone who may create ConfigMaps in their namespace can give them meshca's
// managed-by label, which the Publisher's cache selects on. Of a ConfigMap
// with another name than meshca's, the cache keeps only its identity: a
// tenant's labelled data costs meshca no memory (one tenant's 40 ConfigMaps
// of 900 KB grew its heap by 37 MB). Of meshca's own ConfigMaps it keeps
// the key and labels it reads, whatever a tenant adds to them.
func TestPublisher_CachesNoDataOfLabelledConfigMapsItDoesNotWrite(t *testing.T) {
	ctx := testContext(t)
	const ns = "pub-foreign"
	createNamespace(t, ns, nil)
	ca := newTestCA(t, "A")
	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, ca.desired(ca.crl(t, 1))))
	rootPEM := string(root.EncodePEM(ca.root))
	waitFor(t, restoreTime, "root ConfigMap in "+ns, wantConfigMap(t, ns, RootConfigMapName, rootConfigMapKey, rootPEM))

	junk := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "junk", Namespace: ns, Labels: map[string]string{LabelManagedBy: FieldManager, "extra": "x"},
			Annotations: map[string]string{"note": strings.Repeat("a", 100<<10)}},
		Data:       map[string]string{"blob": strings.Repeat("x", 500<<10)},
		BinaryData: map[string][]byte{"bin": make([]byte, 100<<10)},
	}
	_, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, junk, metav1.CreateOptions{})
	require.NoError(t, err)
	var cached *corev1.ConfigMap
	waitFor(t, restoreTime, "the labelled ConfigMap in the cache", func() error {
		cached, err = p.cachedConfigMap(ctx, ns, "junk")
		if err == nil && cached == nil {
			err = errors.New("not cached yet")
		}
		return err
	})
	require.Equal(t, "junk", cached.Name)
	// Lengths, not contents: a failure should not print 600 KB.
	require.Zero(t, len(cached.Data), "data")
	require.Zero(t, len(cached.BinaryData), "binaryData")
	require.Zero(t, len(cached.Annotations), "annotations")
	require.Zero(t, len(cached.Labels), "labels")

	// A tenant's additions to meshca's own ConfigMap: only its key and
	// meshca's labels are cached.
	cms := env.Client.CoreV1().ConfigMaps(ns)
	cur, err := cms.Get(ctx, RootConfigMapName, metav1.GetOptions{})
	require.NoError(t, err)
	cur.Data["extra"] = strings.Repeat("y", 500<<10)
	cur.Annotations = map[string]string{"note": strings.Repeat("a", 100<<10)}
	cur.Labels["tenant"] = "x"
	_, err = cms.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
	require.NoError(t, err)
	waitFor(t, restoreTime, "the edit in the cache", func() error {
		own, err := p.cachedConfigMap(ctx, ns, RootConfigMapName)
		if err == nil && own.ResourceVersion == cur.ResourceVersion {
			err = errors.New("not the edit yet")
		}
		return err
	})
	own, err := p.cachedConfigMap(ctx, ns, RootConfigMapName)
	require.NoError(t, err)
	require.Equal(t, map[string]string{rootConfigMapKey: rootPEM}, own.Data)
	require.Equal(t, map[string]string{LabelManagedBy: FieldManager, LabelIstioConfig: "true"}, own.Labels)
	require.Zero(t, len(own.Annotations), "annotations")
}
