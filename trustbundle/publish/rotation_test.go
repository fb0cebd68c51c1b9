package publish

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// Istio's plug-in CA rotation (Istio docs, "Plug in CA Certificates"): A; A+B with the old intermediate; A+B
// with the new intermediate; B. At each step root-cert.pem in the Secret
// and in the ConfigMaps passes istiod 1.20–1.29's byte check, and a
// projected-volume query by signerName and label returns exactly the
// active roots.
func TestPublisher_RootRotationAToABToB_KeepsByteAppendRuleAndExactBundleQuery(t *testing.T) {
	ctx := testContext(t)
	deleteCACertsSecret(t)
	createNamespace(t, "rotation-apps", nil)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	p := startPublisher(t, config.TrustBundleConfig{})

	steps := []struct {
		name      string
		desired   Desired
		wantRoots []*x509.Certificate
		wantPEM   []byte
		adding    bool
	}{
		{"A", a.desired(nil, a.root), []*x509.Certificate{a.root}, root.EncodePEM(a.root), true},
		{"A+B, old intermediate", a.desired(nil, a.root, b.root), []*x509.Certificate{a.root, b.root}, root.EncodePEM(a.root, b.root), true},
		// The new root listed first must not reorder the published bytes.
		{"A+B, new intermediate", b.desired(nil, b.root, a.root), []*x509.Certificate{a.root, b.root}, root.EncodePEM(a.root, b.root), true},
		{"B", b.desired(nil, b.root), []*x509.Certificate{b.root}, root.EncodePEM(b.root), false},
	}
	var prevSecret, prevCM []byte
	for _, step := range steps {
		require.NoError(t, p.Update(ctx, step.desired), step.name)
		ca := a
		if step.desired.Bundle == b.bundle {
			ca = b
		}
		waitFor(t, restoreTime, step.name+": cacerts Secret", wantSecret(t, expectedSecret(t, ca, nil, step.wantPEM)))
		waitFor(t, restoreTime, step.name+": root ConfigMap",
			wantConfigMap(t, "rotation-apps", RootConfigMapName, rootConfigMapKey, string(step.wantPEM)))
		waitFor(t, restoreTime, step.name+": ClusterTrustBundle query", wantQueryRoots(t, workload, step.wantRoots...))

		s, err := getSecret(t)
		require.NoError(t, err)
		cm, err := configMapData(t, "rotation-apps", RootConfigMapName, rootConfigMapKey)
		require.NoError(t, err)
		for what, pair := range map[string][2][]byte{"Secret": {prevSecret, s.Data[cacerts.KeyRootCert]}, "ConfigMap": {prevCM, []byte(cm)}} {
			require.NoError(t, byteAppendRule(pair[0], pair[1], step.adding), "%s: %s root-cert.pem", step.name, what)
		}
		prevSecret, prevCM = s.Data[cacerts.KeyRootCert], []byte(cm)

		wantNames := []string{BundleName(workload)}
		if len(step.wantRoots) > 1 {
			for _, r := range step.wantRoots {
				wantNames = append(wantNames, RootBundleName(workload, fingerprint(r)))
			}
		}
		waitFor(t, restoreTime, step.name+": bundle names", func() error {
			if got := bundleNames(t, workload); !sameStrings(got, wantNames) {
				return fmt.Errorf("bundles %v, want %v", got, wantNames)
			}
			return nil
		})
	}
}

// byteAppendRule is istiod 1.20–1.29's check: growing, the new bytes start
// with the old; shrinking, the new bytes are a substring of the old.
func byteAppendRule(old, cur []byte, adding bool) error {
	if old == nil {
		return nil
	}
	if adding && !bytes.HasPrefix(cur, old) {
		return fmt.Errorf("new bytes do not start with the old bytes")
	}
	if !adding && !bytes.Contains(old, cur) {
		return fmt.Errorf("new bytes are not a substring of the old bytes")
	}
	return nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// A bundle of one group that cannot be written (here an admission policy
// refuses istiod's bundle; istiod's bundle without the attest permission,
// or a federated bundle the apiserver refuses, is the same) does not keep
// the stale bundles of another group: after a rotation from A to B the
// workload signer's per-root bundles go, and a projected-volume query
// returns B alone, while istiod's bundle keeps failing (and is retried).
func TestPublisher_AFailingBundleDoesNotKeepAnotherGroupsOldRoots(t *testing.T) {
	ctx := testContext(t)
	deleteCACertsSecret(t)
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	p := startPublisher(t, config.TrustBundleConfig{ClusterTrustBundles: config.ClusterTrustBundlesConfig{IstiodBundle: true}})
	require.NoError(t, p.Update(ctx, a.desired(nil, a.root, b.root)))
	waitFor(t, restoreTime, "A+B: ClusterTrustBundle query", wantQueryRoots(t, workload, a.root, b.root))
	waitFor(t, restoreTime, "A+B: istiod's bundle", wantQueryRoots(t, IstiodSignerName, a.root, b.root))

	env.Refuse(t, kubeenv.RefusalPolicy{
		Name: "refuse-istiod-bundle", Group: "certificates.k8s.io", Resource: "clustertrustbundles", Operations: []string{"CREATE", "UPDATE"},
		Expression: "object.metadata.name != '" + IstiodBundleName + "'", Message: "istiod's bundle is refused here",
	})
	waitFor(t, 20*time.Second, "the admission policy is in force", func() error {
		cur, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, IstiodBundleName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.TrustBundle += "\n"
		_, err = env.Client.CertificatesV1().ClusterTrustBundles().Update(ctx, cur, metav1.UpdateOptions{})
		if err == nil || !strings.Contains(err.Error(), "istiod's bundle is refused here") {
			return fmt.Errorf("an update of istiod's bundle was not refused by the policy: %v", err)
		}
		return nil
	})

	require.NoError(t, p.Update(ctx, b.desired(nil, b.root)))
	waitFor(t, restoreTime, "B: the workload signer's query", wantQueryRoots(t, workload, b.root))
	waitFor(t, restoreTime, "B: the workload signer's bundles", func() error {
		if got := bundleNames(t, workload); !sameStrings(got, []string{BundleName(workload)}) {
			return fmt.Errorf("bundles %v, want only %s", got, BundleName(workload))
		}
		return nil
	})
	require.NoError(t, wantQueryRoots(t, IstiodSignerName, a.root, b.root)(), "istiod's bundle could not be written")
}
