package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	gofed "github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/root"
)

// TestClusters_FederatedRootsReachEveryCluster: a foreign trust domain's
// roots (federation.trustDomains) are published as a labelled
// ClusterTrustBundle in every cluster of the clusters section, not only in
// the local one, so that every cluster's proxies trust the partner; removed
// from the configuration, the bundle is deleted there after a restart.
func TestClusters_FederatedRootsReachEveryCluster(t *testing.T) {
	west, westKC := meshcaInCluster(t, "shop")
	ctx := context.Background()
	ep := &partnerEndpoint{td: spiffeid.RequireTrustDomainFromString("partner.example")}
	partnerRoot := caCert(t, "partner A", "spiffe://partner.example")
	ep.serve(1, partnerRoot)
	h, err := gofed.NewHandler(ep.td, ep)
	require.NoError(t, err)
	ep.srv = httptest.NewTLSServer(h)
	t.Cleanup(ep.srv.Close)

	dir := initCA(t)
	caFile := filepath.Join(t.TempDir(), "web-roots.pem")
	require.NoError(t, os.WriteFile(caFile, root.EncodePEM(ep.srv.Certificate()), 0o600))
	appendYAML(t, dir, "clusters:\n  - {id: west, kubeconfig: "+westKC+", mode: meshca-signs}\n")
	cfgPath := filepath.Join(dir, "meshca.yaml")
	base, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	appendYAML(t, dir, fmt.Sprintf(`federation:
  trustDomains:
    - trustDomain: partner.example
      bundleEndpointURL: %s
      profile: https_web
      caFile: %s
  minRefresh: 1s
  maxRefresh: 2s
`, ep.srv.URL, caFile))

	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	const name = "meshca-federated.partner.example"
	waitFor(t, 20*time.Second, "west's ClusterTrustBundle of partner.example", func() bool {
		b, err := west.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
		return err == nil && b.Labels["meshca.io/federated-trust-domain"] == "partner.example" &&
			b.Spec.TrustBundle == string(root.EncodePEM(partnerRoot))
	})

	stopServe(t, s)
	require.NoError(t, os.WriteFile(cfgPath, base, 0o600))
	s2 := startServe(t, dir)
	s2.waitReady(t, 10*time.Second)
	waitFor(t, 20*time.Second, "west's federated bundle deleted", func() bool {
		_, err := west.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}
