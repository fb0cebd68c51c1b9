package podcert_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/trustbundle/publish"
)

// The shipped example pod names the signer of meshca's default
// configuration, selects the ClusterTrustBundles meshca publishes for it,
// and is accepted by kube-apiserver 1.37.
func TestExamplePod_MountsMeshcasSignerAndTrustBundle(t *testing.T) {
	root, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "podcertificate-pod.yaml"))
	require.NoError(t, err)
	var pod corev1.Pod
	require.NoError(t, yaml.UnmarshalStrict(b, &pod))

	cfg, err := config.Parse([]byte("signers: {podCertificates: {enabled: true}}\n"))
	require.NoError(t, err)
	signer := cfg.Signers.PodCertificates.SignerName
	require.Contains(t, cfg.TrustBundle.ClusterTrustBundles.SignerNames, signer)

	require.Len(t, pod.Spec.Volumes, 1)
	sources := pod.Spec.Volumes[0].Projected.Sources
	require.Len(t, sources, 2)
	pc := sources[0].PodCertificate
	require.NotNil(t, pc)
	require.Equal(t, signer, pc.SignerName)
	require.Equal(t, "ECDSAP256", pc.KeyType)
	require.NotEmpty(t, pc.CredentialBundlePath)
	ctb := sources[1].ClusterTrustBundle
	require.NotNil(t, ctb)
	require.Equal(t, signer, *ctb.SignerName)
	sel, err := metav1.LabelSelectorAsSelector(ctb.LabelSelector)
	require.NoError(t, err)
	require.Equal(t, publish.BundleLabelSelector(signer), sel.String())

	ctx := context.Background()
	_, err = kube.EnsureServiceAccount(ctx, pod.Namespace, pod.Spec.ServiceAccountName)
	require.NoError(t, err)
	_, err = kube.Client.CoreV1().Pods(pod.Namespace).Create(ctx, &pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.NoError(t, err)
}
