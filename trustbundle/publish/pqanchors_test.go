package publish

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/root"
)

// pqAnchorsPEM returns fresh "PUBLIC KEY" PEM blocks for the given
// post-quantum algorithms, as authority.Material.PQAnchorsPEM makes them.
func pqAnchorsPEM(t *testing.T, algorithms ...string) []byte {
	t.Helper()
	var out []byte
	for _, alg := range algorithms {
		k, err := pqc.GenerateKey(alg, nil)
		require.NoError(t, err)
		b, err := pqc.MarshalPublicKeyPEM(k.Public())
		require.NoError(t, err)
		out = append(out, b...)
	}
	return out
}

func TestCompile_AcceptsPQAnchorsAndRejectsWhatIsNotAPostQuantumKey(t *testing.T) {
	ca := newTestCA(t, "C")
	anchors := pqAnchorsPEM(t, "ML-DSA-65", "MLDSA65-ECDSA-P256-SHA512")
	st, err := compile(Desired{Roots: ca.bundle.Roots, PQAnchors: anchors})
	require.NoError(t, err)
	require.Equal(t, anchors, st.pqAnchors, "published byte for byte")

	st, err = compile(Desired{Roots: ca.bundle.Roots})
	require.NoError(t, err)
	require.Empty(t, st.pqAnchors, "a classical CA has none")

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKIXPublicKey(ecKey.Public())
	require.NoError(t, err)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	oneKey := pqAnchorsPEM(t, "ML-DSA-87")
	tests := map[string]struct {
		anchors []byte
		want    string
	}{
		"data that is not PEM":         {[]byte("junk"), "Desired.PQAnchors holds data that is not PEM"},
		"PEM followed by junk":         {append(bytes.Clone(oneKey), "junk"...), "Desired.PQAnchors holds data that is not PEM"},
		"a certificate":                {root.EncodePEM(ca.root), `Desired.PQAnchors block 1 is "CERTIFICATE"; only PUBLIC KEY blocks are allowed`},
		"a classical public key":       {append(bytes.Clone(oneKey), ecPEM...), "Desired.PQAnchors: pqc: anchor \"block 2\""},
		"only whitespace":              {[]byte("\n \n"), "Desired.PQAnchors holds no PUBLIC KEY block"},
		"more than an annotation fits": {bytes.Repeat(oneKey, maxPQAnchorsBytes/len(oneKey)+1), "over the"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := compile(Desired{Roots: ca.bundle.Roots, PQAnchors: tc.anchors})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// pqConfigMap returns the anchors ConfigMap's content, or an error when it
// is absent or lacks meshca's label.
func pqConfigMap(t *testing.T) (string, error) {
	cm, err := env.Client.CoreV1().ConfigMaps(istiod).Get(testContext(t), PQAnchorsConfigMapName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if cm.Labels[LabelManagedBy] != FieldManager {
		return "", fmt.Errorf("ConfigMap %s/%s has labels %v", istiod, PQAnchorsConfigMapName, cm.Labels)
	}
	if len(cm.Data) != 1 {
		return "", fmt.Errorf("ConfigMap %s/%s has keys %v, want only %s", istiod, PQAnchorsConfigMapName, keysOf(cm.Data), PQAnchorsConfigMapKey)
	}
	return cm.Data[PQAnchorsConfigMapKey], nil
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func wantPQConfigMap(t *testing.T, want []byte) func() error {
	return func() error {
		got, err := pqConfigMap(t)
		if err != nil {
			return err
		}
		if got != string(want) {
			return fmt.Errorf("%s holds %d bytes, want %d", PQAnchorsConfigMapKey, len(got), len(want))
		}
		return nil
	}
}

// wantBundleAnnotation checks bundle name's PQ anchors annotation: exactly
// want, or absent when want is nil. The roots must stay rootsPEM.
func wantBundleAnnotation(t *testing.T, name string, rootsPEM string, want []byte) func() error {
	return func() error {
		b, err := getBundle(t, name)
		if err != nil {
			return err
		}
		if b.Spec.TrustBundle != rootsPEM {
			return fmt.Errorf("bundle %s holds %d bytes of roots, want %d", name, len(b.Spec.TrustBundle), len(rootsPEM))
		}
		got, ok := b.Annotations[AnnotationPQAnchors]
		switch {
		case want == nil && ok:
			return fmt.Errorf("bundle %s still carries %s (%d bytes)", name, AnnotationPQAnchors, len(got))
		case want != nil && got != string(want):
			return fmt.Errorf("bundle %s annotation %s: %d bytes (present %v), want %d", name, AnnotationPQAnchors, len(got), ok, len(want))
		}
		return nil
	}
}

func TestPublisher_PublishesPQAnchorsInConfigMapAndSignerBundleAnnotation_AndRestoresThem(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "PQ")
	anchors := pqAnchorsPEM(t, "ML-DSA-65", "ML-DSA-87")
	cfg := config.TrustBundleConfig{ClusterTrustBundles: config.ClusterTrustBundlesConfig{IstiodBundle: true}}
	p := startPublisher(t, cfg)
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, PQAnchors: anchors}))
	rootsPEM := string(root.EncodePEM(ca.root))

	cmOK := wantPQConfigMap(t, anchors)
	bundleOK := wantBundleAnnotation(t, BundleName(workload), rootsPEM, anchors)
	waitFor(t, restoreTime, "PQ anchors ConfigMap", cmOK)
	waitFor(t, restoreTime, "PQ anchors annotation on "+BundleName(workload), bundleOK)
	waitFor(t, restoreTime, "istiod's bundle without the annotation", wantBundleAnnotation(t, IstiodBundleName, rootsPEM, nil))

	cm, err := env.Client.CoreV1().ConfigMaps(istiod).Get(ctx, PQAnchorsConfigMapName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{LabelManagedBy: FieldManager}, cm.Labels)
	require.Equal(t, map[string]string{PQAnchorsConfigMapKey: string(anchors)}, cm.Data)
	got, err := pqc.ParsePublicKeyPEM([]byte(cm.Data[PQAnchorsConfigMapKey]))
	require.NoError(t, err, "a PQ-aware consumer parses the published anchor")
	require.NotNil(t, got)

	cms := env.Client.CoreV1().ConfigMaps(istiod)
	bundles := env.Client.CertificatesV1().ClusterTrustBundles()
	other := string(pqAnchorsPEM(t, "ML-DSA-44"))
	tamper := []struct {
		name   string
		change func() error
		check  func() error
	}{
		{"delete the ConfigMap", func() error { return cms.Delete(ctx, PQAnchorsConfigMapName, metav1.DeleteOptions{}) }, cmOK},
		{"replace the ConfigMap's anchor with another key", func() error {
			c, err := cms.Get(ctx, PQAnchorsConfigMapName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			c.Data[PQAnchorsConfigMapKey] = other
			_, err = cms.Update(ctx, c, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, cmOK},
		{"drop the ConfigMap's labels", func() error {
			c, err := cms.Get(ctx, PQAnchorsConfigMapName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			c.Labels = nil
			_, err = cms.Update(ctx, c, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, cmOK},
		{"replace the bundle's annotation with another key", func() error {
			b, err := bundles.Get(ctx, BundleName(workload), metav1.GetOptions{})
			if err != nil {
				return err
			}
			b.Annotations[AnnotationPQAnchors] = other
			_, err = bundles.Update(ctx, b, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, bundleOK},
		{"remove the bundle's annotation", func() error {
			b, err := bundles.Get(ctx, BundleName(workload), metav1.GetOptions{})
			if err != nil {
				return err
			}
			delete(b.Annotations, AnnotationPQAnchors)
			_, err = bundles.Update(ctx, b, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, bundleOK},
		{"delete the bundle", func() error { return bundles.Delete(ctx, BundleName(workload), metav1.DeleteOptions{}) }, bundleOK},
	}
	for _, tc := range tamper {
		require.NoError(t, tc.change(), tc.name)
		took := waitFor(t, restoreTime, "restored after: "+tc.name, tc.check)
		t.Logf("%s: restored in %s", tc.name, took)
	}
	require.NoError(t, cmOK())
	require.NoError(t, bundleOK())
}

func TestPublisher_WithdrawsPQAnchorsWhenTheCAHasNone(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "PQ-withdraw")
	anchors := pqAnchorsPEM(t, "ML-DSA-65")
	p := startPublisher(t, config.TrustBundleConfig{})
	rootsPEM := string(root.EncodePEM(ca.root))
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, PQAnchors: anchors}))
	waitFor(t, restoreTime, "PQ anchors ConfigMap", wantPQConfigMap(t, anchors))
	waitFor(t, restoreTime, "PQ anchors annotation", wantBundleAnnotation(t, BundleName(workload), rootsPEM, anchors))

	// The CA turns classical: no anchor may stay trusted.
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots}))
	waitFor(t, restoreTime, "PQ anchors ConfigMap deleted", func() error {
		_, err := pqConfigMap(t)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.Join(errors.New("the ConfigMap is still there"), err)
	})
	waitFor(t, restoreTime, "annotation removed, roots kept", wantBundleAnnotation(t, BundleName(workload), rootsPEM, nil))
	// Counted once the apiserver's answer is back, which may be after the
	// test sees the ConfigMap gone.
	waitFor(t, restoreTime, "the delete counted", func() error {
		if v := metricValue(t, p.reg, "meshca_trustbundle_writes_total", map[string]string{"object": objectPQAnchorsCM, "operation": "delete"}); v != 1 {
			return fmt.Errorf("meshca_trustbundle_writes_total{delete} is %v; want 1", v)
		}
		return nil
	})

	// And they come back with the next post-quantum CA.
	again := pqAnchorsPEM(t, "MLDSA44-ECDSA-P256-SHA256")
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, PQAnchors: again}))
	waitFor(t, restoreTime, "PQ anchors ConfigMap republished", wantPQConfigMap(t, again))
	waitFor(t, restoreTime, "annotation republished", wantBundleAnnotation(t, BundleName(workload), rootsPEM, again))
}

func TestPublisher_AnnotatesV1beta1SignerBundleWithPQAnchors(t *testing.T) {
	ctx := testContext(t)
	ca := newTestCA(t, "PQ-beta")
	anchors := pqAnchorsPEM(t, "ML-DSA-65")
	p := startPublisher(t, config.TrustBundleConfig{}, WithClusterTrustBundleVersion("v1beta1"))
	require.NoError(t, p.Update(ctx, Desired{Roots: ca.bundle.Roots, PQAnchors: anchors}))
	waitFor(t, restoreTime, "v1beta1 bundle annotation", func() error {
		b, err := env.Client.CertificatesV1beta1().ClusterTrustBundles().Get(ctx, BundleName(workload), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := b.Annotations[AnnotationPQAnchors]; got != string(anchors) {
			return fmt.Errorf("annotation holds %d bytes, want %d", len(got), len(anchors))
		}
		if !strings.HasPrefix(b.Spec.TrustBundle, "-----BEGIN CERTIFICATE-----") {
			return errors.New("the bundle's roots are not certificates")
		}
		return nil
	})
}
