package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshca/meshca/test/kubeenv"
)

// TestServe_WithClusterReviewsTokensAndPublishesRoots runs the binary as an
// operator would, as a ServiceAccount bound to deploy/rbac: proxies
// authenticate with ServiceAccount tokens, every namespace gets
// istio-ca-root-cert, and the post-quantum trust anchor (pq-anchor.pem of
// the default catalyst CA) is published in istiod's namespace and on the
// workload signer's ClusterTrustBundle.
func TestServe_WithClusterReviewsTokensAndPublishesRoots(t *testing.T) {
	env, err := kubeenv.Start()
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx := context.Background()
	require.NoError(t, env.CreateNamespace(ctx, "shop"))

	// meshca runs as istio-system/meshca with exactly the RBAC in deploy/rbac.
	root, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	require.NoError(t, env.CreateNamespace(ctx, "istio-system"))
	for _, f := range []string{"serviceaccount.yaml", "trustbundle.yaml", "istio-endpoint.yaml", "controllers.yaml"} {
		_, err := env.ApplyYAMLFile(ctx, filepath.Join(root, "deploy", "rbac", f))
		require.NoError(t, err)
	}
	saCfg, _, err := env.ClientAs(ctx, "istio-system", "meshca")
	require.NoError(t, err)

	dir := initCA(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, tokenKubeconfig(t, saCfg), 0o600))
	cfg := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	b = append(b, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n")...)
	require.NoError(t, os.WriteFile(cfg, b, 0o644))

	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)

	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cm, err := env.Client.CoreV1().ConfigMaps("shop").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		return err == nil && cm.Data["root-cert.pem"] == string(rootPEM) && cm.Labels["istio.io/config"] == "true"
	}, 10*time.Second, 50*time.Millisecond, "istio-ca-root-cert not published:\n%s", s.logs())
	pqAnchor, err := os.ReadFile(filepath.Join(dir, "pq-anchor.pem"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cm, err := env.Client.CoreV1().ConfigMaps("istio-system").Get(ctx, "meshca-pq-trust-anchors", metav1.GetOptions{})
		if err != nil || cm.Data["pq-anchors.pem"] != string(pqAnchor) || cm.Labels["app.kubernetes.io/managed-by"] != "meshca" {
			return false
		}
		b, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, "meshca.io:workload:roots", metav1.GetOptions{})
		return err == nil && b.Annotations["meshca.io/pq-trust-anchors"] == string(pqAnchor) && b.Spec.TrustBundle == string(rootPEM)
	}, 10*time.Second, 50*time.Millisecond, "post-quantum trust anchor not published:\n%s", s.logs())

	token, err := env.MintToken(ctx, "shop", "cart", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "meshca.istio-system.svc"})))
	require.NoError(t, err)
	defer conn.Close()
	csrPath, _ := writeCSRWithKey(t, t.TempDir(), "spiffe://cluster.local/ns/shop/sa/cart")
	csr, err := os.ReadFile(csrPath)
	require.NoError(t, err)
	meta, _ := structpb.NewStruct(map[string]any{"CertSigner": ""})
	cctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "clusterid", "Kubernetes")
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: string(csr), Metadata: meta})
	require.NoError(t, err, s.logs())
	require.Len(t, resp.CertChain, 3)
	require.Equal(t, string(rootPEM), resp.CertChain[2])
}

// tokenKubeconfig writes a kubeconfig that authenticates with cfg's bearer token.
func tokenKubeconfig(t *testing.T, cfg *rest.Config) []byte {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["meshca"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "meshca"}
	kc.CurrentContext = "test"
	b, err := clientcmd.Write(*kc)
	require.NoError(t, err)
	return b
}

// meshcaInCluster starts a real apiserver with the namespace istio-system
// and namespaces, installs meshca's least-privilege RBAC from deploy/rbac
// (serviceaccount, trustbundle, istio-endpoint, controllers and the signers') and returns it with a
// kubeconfig file that authenticates as istio-system/meshca.
func meshcaInCluster(t *testing.T, namespaces ...string) (*kubeenv.Env, string) {
	t.Helper()
	env, err := kubeenv.Start()
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	ctx := context.Background()
	for _, ns := range append([]string{"istio-system"}, namespaces...) {
		require.NoError(t, env.CreateNamespace(ctx, ns))
	}
	root, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	for _, f := range []string{"serviceaccount.yaml", "trustbundle.yaml", "istio-endpoint.yaml", "podcert-signer.yaml", "csr-signer.yaml", "controllers.yaml", "certmanager-issuer.yaml"} {
		_, err := env.ApplyYAMLFile(ctx, filepath.Join(root, "deploy", "rbac", f))
		require.NoError(t, err)
	}
	saCfg, _, err := env.ClientAs(ctx, "istio-system", "meshca")
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, tokenKubeconfig(t, saCfg), 0o600))
	return env, kubeconfig
}
