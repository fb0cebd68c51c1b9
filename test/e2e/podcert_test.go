package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestServe_SignsPodCertificateRequests runs the binary under deploy/rbac
// (podcert-signer.yaml included) with the PodCertificateRequest signer and
// ClusterTrustBundles on. A request as the kubelet makes it (an admin
// stands in for the kubelet: the pod and its node are plain objects) gets
// the X.509-SVID of the pod's ServiceAccount, which verifies against the
// ClusterTrustBundle meshca published for the signer; a request whose pod
// UID is stale is denied.
func TestServe_SignsPodCertificateRequests(t *testing.T) {
	env, kubeconfig := meshcaInCluster(t, "shop")
	dir := initCA(t)
	appendYAML(t, dir, "kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n"+
		"signers:\n  podCertificates:\n    enabled: true\n")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	ctx := context.Background()

	node, err := env.CreateNode(ctx, "node-1")
	require.NoError(t, err)
	pod, err := env.CreatePod(ctx, "shop", "cart-7d9f", "cart", node.Name)
	require.NoError(t, err)
	sa, err := env.EnsureServiceAccount(ctx, "shop", "cart")
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	stub, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	require.NoError(t, err)
	maxExp := int32(7200)
	create := func(podUID types.UID) *certificatesv1.PodCertificateRequest {
		pcr, err := env.Client.CertificatesV1().PodCertificateRequests("shop").Create(ctx, &certificatesv1.PodCertificateRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "cart-7d9f-"},
			Spec: certificatesv1.PodCertificateRequestSpec{
				SignerName: "meshca.io/workload", PodName: pod.Name, PodUID: podUID,
				ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
				NodeName: types.NodeName(node.Name), NodeUID: node.UID,
				MaxExpirationSeconds: &maxExp, StubPKCS10Request: stub,
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return pcr
	}
	wait := func(pcr *certificatesv1.PodCertificateRequest) (*certificatesv1.PodCertificateRequest, *metav1.Condition) {
		var got *certificatesv1.PodCertificateRequest
		var cond *metav1.Condition
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err = env.Client.CertificatesV1().PodCertificateRequests("shop").Get(ctx, pcr.Name, metav1.GetOptions{})
			require.NoError(t, err)
			for _, typ := range []string{"Issued", "Denied", "Failed"} {
				if cond = meta.FindStatusCondition(got.Status.Conditions, typ); cond != nil {
					return got, cond
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("PodCertificateRequest %s not finished within 20s:\n%s", pcr.Name, s.logs())
			}
		}
	}

	got, cond := wait(create(pod.UID))
	require.Equal(t, "Issued", cond.Type, cond.Message)
	chain := splitPEM(t, got.Status.CertificateChain)
	require.Len(t, chain, 2, "leaf and intermediate; the root comes from the ClusterTrustBundle")
	leaf := chain[0]
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, "spiffe://cluster.local/ns/shop/sa/cart", leaf.URIs[0].String())
	require.Empty(t, leaf.DNSNames)
	require.True(t, key.PublicKey.Equal(leaf.PublicKey))
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	require.GreaterOrEqual(t, life, time.Hour)
	require.LessOrEqual(t, life, time.Duration(maxExp)*time.Second)
	require.WithinDuration(t, time.Now(), leaf.NotBefore, 5*time.Minute)
	require.True(t, got.Status.NotBefore.Time.Equal(leaf.NotBefore))
	require.True(t, got.Status.NotAfter.Time.Equal(leaf.NotAfter))
	require.True(t, got.Status.BeginRefreshAt.Time.Equal(leaf.NotBefore.Add(life/2).Truncate(time.Second)))

	// The roots pods mount: the signer's ClusterTrustBundle.
	ctb, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, "meshca.io:workload:roots", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "meshca.io/workload", ctb.Spec.SignerName)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Equal(t, string(rootPEM), ctb.Spec.TrustBundle)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM([]byte(ctb.Spec.TrustBundle)))
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	got, cond = wait(create("0b7c5e2e-6d4f-4f39-9a53-0000000000ff"))
	require.Equal(t, "Denied", cond.Type, cond.Message)
	require.Equal(t, "PodMismatch", cond.Reason)
	require.Contains(t, cond.Message, "pod shop/cart-7d9f has UID "+string(pod.UID))
	require.Empty(t, got.Status.CertificateChain)

	// The reconciler counts its outcome after the status write the test saw.
	m := s.waitMetrics(t, 5*time.Second, map[string]float64{
		`meshca_controller_reconcile_total{controller="podcertificate",outcome="issued"}`: 1,
		`meshca_controller_reconcile_total{controller="podcertificate",outcome="denied"}`: 1,
	})
	require.Zero(t, m[`meshca_controller_reconcile_total{controller="podcertificate",outcome="failed"}`])
}
