package publish

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/pemutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/trustbundle/cacerts"
)

// wantSecret checks that cacerts holds exactly want in the Istio keys.
func wantSecret(t *testing.T, want map[string][]byte) func() error {
	return func() error {
		s, err := getSecret(t)
		if err != nil {
			return err
		}
		if s.Labels[LabelManagedBy] != FieldManager {
			return fmt.Errorf("cacerts labels %v", s.Labels)
		}
		for _, k := range secretKeys {
			if !bytes.Equal(s.Data[k], want[k]) {
				return fmt.Errorf("cacerts %s: %d bytes, want %d", k, len(s.Data[k]), len(want[k]))
			}
		}
		return nil
	}
}

// expectedSecret is the cacerts content for ca publishing roots and crl.
func expectedSecret(t *testing.T, ca *testCA, crl []byte, rootsPEM []byte) map[string][]byte {
	files, err := cacerts.Files(ca.bundle, ca.key, crl)
	require.NoError(t, err)
	files[cacerts.KeyRootCert] = rootsPEM
	return files
}

func TestPublisher_PublishesSecretConfigMapsAndV1ClusterTrustBundles(t *testing.T) {
	ctx := testContext(t)
	deleteCACertsSecret(t)
	createNamespace(t, "pub-apps", nil)
	ca := newTestCA(t, "A")
	crl := ca.crl(t, 3)
	cfg := config.TrustBundleConfig{ClusterTrustBundles: config.ClusterTrustBundlesConfig{IstiodBundle: true}}
	p := startPublisher(t, cfg)
	require.NoError(t, p.Update(ctx, ca.desired(crl)))

	rootPEM := root.EncodePEM(ca.root)
	waitFor(t, restoreTime, "cacerts Secret", wantSecret(t, expectedSecret(t, ca, crl, rootPEM)))
	s, err := getSecret(t)
	require.NoError(t, err)
	key, err := pemutil.ParseKey(s.Data[cacerts.KeyCAKey])
	require.NoError(t, err)
	require.NoError(t, checkKeyMatches(ca.bundle.Cert, key))
	require.Equal(t, root.EncodePEM(ca.bundle.Cert, ca.root), s.Data[cacerts.KeyCertChain])
	var managers []string
	for _, mf := range s.ManagedFields {
		managers = append(managers, fmt.Sprintf("%s/%s", mf.Manager, mf.Operation))
	}
	require.Equal(t, []string{"meshca/Apply"}, managers, "every write is a server-side apply by meshca")

	for _, ns := range []string{"pub-apps", "default", istiod} {
		waitFor(t, restoreTime, "root ConfigMap in "+ns, wantConfigMap(t, ns, RootConfigMapName, rootConfigMapKey, string(rootPEM)))
		waitFor(t, restoreTime, "CRL ConfigMap in "+ns, wantConfigMap(t, ns, config.DefaultCRLConfigMapName, crlConfigMapKey, string(crl)))
	}

	waitFor(t, restoreTime, "ClusterTrustBundles", func() error {
		for name, signer := range map[string]string{BundleName(workload): workload, IstiodBundleName: IstiodSignerName} {
			b, err := getBundle(t, name)
			if err != nil {
				return err
			}
			if b.Spec.SignerName != signer || b.Spec.TrustBundle != string(rootPEM) {
				return fmt.Errorf("bundle %s: signer %q, %d bytes", name, b.Spec.SignerName, len(b.Spec.TrustBundle))
			}
		}
		return nil
	})
	require.Equal(t, "meshca.io:workload:roots", BundleName(workload))
	waitFor(t, restoreTime, "query by signerName and label", wantQueryRoots(t, workload, ca.root))
}

func TestPublisher_RestoresEditedOrDeletedObjectsWithin5s(t *testing.T) {
	ctx := testContext(t)
	deleteCACertsSecret(t)
	createNamespace(t, "restore-apps", nil)
	ca := newTestCA(t, "R")
	other := newTestCA(t, "intruder")
	crl := ca.crl(t, 1)
	p := startPublisher(t, config.TrustBundleConfig{})
	require.NoError(t, p.Update(ctx, ca.desired(crl)))
	rootPEM := string(root.EncodePEM(ca.root))
	secretOK := wantSecret(t, expectedSecret(t, ca, crl, []byte(rootPEM)))
	rootCMOK := wantConfigMap(t, "restore-apps", RootConfigMapName, rootConfigMapKey, rootPEM)
	crlCMOK := wantConfigMap(t, "restore-apps", config.DefaultCRLConfigMapName, crlConfigMapKey, string(crl))
	bundleOK := func() error {
		b, err := getBundle(t, BundleName(workload))
		if err != nil {
			return err
		}
		if b.Spec.TrustBundle != rootPEM || b.Labels[LabelTrustBundle] != "workload" {
			return errors.New("bundle content or labels differ")
		}
		return nil
	}
	for what, check := range map[string]func() error{"secret": secretOK, "root cm": rootCMOK, "crl cm": crlCMOK, "bundle": bundleOK} {
		waitFor(t, restoreTime, "initial "+what, check)
	}

	cm := env.Client.CoreV1().ConfigMaps("restore-apps")
	secrets := env.Client.CoreV1().Secrets(istiod)
	bundles := env.Client.CertificatesV1().ClusterTrustBundles()
	tamper := []struct {
		name   string
		change func() error
		check  func() error
	}{
		{"delete Secret", func() error { return secrets.Delete(ctx, SecretName, metav1.DeleteOptions{}) }, secretOK},
		{"edit Secret root-cert.pem and drop ca-crl.pem", func() error {
			s, err := secrets.Get(ctx, SecretName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Data[cacerts.KeyRootCert] = root.EncodePEM(other.root)
			delete(s.Data, cacerts.KeyCRL)
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, secretOK},
		{"delete root ConfigMap", func() error { return cm.Delete(ctx, RootConfigMapName, metav1.DeleteOptions{}) }, rootCMOK},
		{"edit root ConfigMap to garbage and drop its labels", func() error {
			c, err := cm.Get(ctx, RootConfigMapName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			c.Data[rootConfigMapKey] = "garbage"
			c.Labels = nil
			_, err = cm.Update(ctx, c, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, rootCMOK},
		{"delete CRL ConfigMap", func() error { return cm.Delete(ctx, config.DefaultCRLConfigMapName, metav1.DeleteOptions{}) }, crlCMOK},
		{"delete ClusterTrustBundle", func() error { return bundles.Delete(ctx, BundleName(workload), metav1.DeleteOptions{}) }, bundleOK},
		{"edit ClusterTrustBundle to another root", func() error {
			b, err := bundles.Get(ctx, BundleName(workload), metav1.GetOptions{})
			if err != nil {
				return err
			}
			b.Spec.TrustBundle = string(root.EncodePEM(other.root))
			_, err = bundles.Update(ctx, b, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
			return err
		}, bundleOK},
	}
	for _, tc := range tamper {
		require.NoError(t, tc.change(), tc.name)
		took := waitFor(t, restoreTime, "restored after "+tc.name, tc.check)
		t.Logf("%s: restored in %s", tc.name, took)
	}
}
