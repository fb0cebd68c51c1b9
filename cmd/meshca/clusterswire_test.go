package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/test/kubeenv"
)

// A cluster's kubeconfig from a Secret of the local cluster (as istioctl
// create-remote-secret writes it) reaches that cluster; a missing key or
// content that is no kubeconfig is refused with the Secret named and its
// content never quoted.
func TestClusterRESTConfig_FromASecretOfTheLocalCluster(t *testing.T) {
	env, err := kubeenv.Start(kubeenv.WithoutDefaultCRDs())
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx := context.Background()
	require.NoError(t, env.CreateNamespace(ctx, "istio-system"))
	_, err = env.Client.CoreV1().Secrets("istio-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-east"},
		Data:       map[string][]byte{"east": env.KubeConfig(), "junk": []byte("token: s3cr3t-value\n")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	cl := config.ClusterConfig{ID: "east", Mode: config.ClusterModePlugIn,
		KubeconfigSecret: &config.SecretKeyRef{Namespace: "istio-system", Name: "istio-remote-secret-east", Key: "east"}}
	rc, err := clusterRESTConfig(ctx, cl, env.Client)
	require.NoError(t, err)
	cs, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().Get(ctx, "istio-system", metav1.GetOptions{})
	require.NoError(t, err, "the kubeconfig from the Secret reaches the cluster")
	require.Equal(t, float32(100), rc.QPS, "tuned for TokenReview bursts")

	cl.KubeconfigSecret.Key = "west"
	_, err = clusterRESTConfig(ctx, cl, env.Client)
	require.EqualError(t, err, `cluster "east": Secret istio-system/istio-remote-secret-east has no key "west" (set clusters[].kubeconfigSecret.key)`)
	cl.KubeconfigSecret.Key = "junk"
	_, err = clusterRESTConfig(ctx, cl, env.Client)
	require.EqualError(t, err, `cluster "east": Secret istio-system/istio-remote-secret-east key "junk" is not a usable kubeconfig`)
	cl.KubeconfigSecret.Name = "nope"
	_, err = clusterRESTConfig(ctx, cl, env.Client)
	require.ErrorContains(t, err, `cluster "east": reading its kubeconfig Secret istio-system/nope: `)
}
