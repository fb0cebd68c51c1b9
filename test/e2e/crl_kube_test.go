package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/test/kubeenv"
)

// crlCluster is a real apiserver with deploy/rbac applied, and a
// kubeconfig for meshca's ServiceAccount.
type crlCluster struct {
	env        *kubeenv.Env
	kubeconfig string
}

func newCRLCluster(t *testing.T) *crlCluster {
	t.Helper()
	env, kc := meshcaInCluster(t, "shop")
	return &crlCluster{env: env, kubeconfig: kc}
}

// yaml is the configuration that publishes into the cluster, the cacerts
// Secret included.
func (c *crlCluster) yaml() string {
	return "kubernetes:\n  kubeconfig: " + c.kubeconfig + "\ntrustBundle:\n  enabled: true\n  publishCACerts: true\n"
}

// configMapCRL is ca-crl.pem of the istio-ca-crl ConfigMap in ns, as the
// apiserver holds it.
func (c *crlCluster) configMapCRL(t *testing.T, ns string) []byte {
	t.Helper()
	cm, err := c.env.Client.CoreV1().ConfigMaps(ns).Get(context.Background(), "istio-ca-crl", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	require.Equal(t, "true", cm.Labels["istio.io/config"])
	return []byte(cm.Data["ca-crl.pem"])
}

// secretCRL is ca-crl.pem of istio-system/cacerts.
func (c *crlCluster) secretCRL(t *testing.T) []byte {
	t.Helper()
	s, err := c.env.Client.CoreV1().Secrets("istio-system").Get(context.Background(), "cacerts", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return s.Data["ca-crl.pem"]
}

// A file root whose key meshca holds, two generations (the retired one's
// leaves live on): openssl verify -crl_check_all with exactly the
// ca-crl.pem of the istio-ca-crl ConfigMap and of the cacerts Secret, read
// back from the apiserver, and of 'meshca cacerts', accepts the good
// leaves and rejects a revoked leaf and every leaf of a revoked generation.
// Also measures revoke-ack -> ConfigMap (target 5 s).
func TestCRL_FileRootCaCRLInTheClusterVerifiesWithOpenSSL(t *testing.T) {
	c := newCRLCluster(t)
	dir := initCA(t)
	appendYAML(t, dir, c.yaml())

	// Generation 1 (catalyst) signs a leaf, then a new profile makes
	// generation 2 the active one.
	s := startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	gen1Leaf := signLeaf(t, dir, workloadID)
	s.sigterm(t)
	setYAML(t, dir, "intermediate:\n  profile: catalyst\n  pqAlgorithm: ML-DSA-65\n", "intermediate:\n  profile: classical\n")
	setYAML(t, dir, "issuance:\n  profile: catalyst\n", "issuance:\n  profile: classical\n")
	s = startServe(t, dir)
	s.waitReady(t, 5*time.Second)
	good := signLeaf(t, dir, workloadID)
	bad := signLeaf(t, dir, "spiffe://cluster.local/ns/shop/sa/stolen")
	require.False(t, good[1].Equal(gen1Leaf[1]), "a second generation")
	root := good[2]

	waitFor(t, 10*time.Second, "ca-crl.pem in the ConfigMap and the Secret", func() bool {
		return len(c.configMapCRL(t, "shop")) > 0 && len(c.secretCRL(t)) > 0
	})
	cases := map[string]verdict{
		"generation 1 leaf": {gen1Leaf, true}, "good leaf": {good, true}, "leaf to be revoked": {bad, true},
	}
	requireVerdicts(t, "ConfigMap before the revocations", c.configMapCRL(t, "shop"), root, cases)

	meshca(t, "revoke", "--dir", dir, "--serial", serialOf(bad[0]), "--reason", "keyCompromise")
	took := waitFor(t, 10*time.Second, "the revoked leaf in the ConfigMap", func() bool {
		out, ok := opensslVerifyCRLs(t, c.configMapCRL(t, "shop"), root, bad[1], bad[0])
		return !ok && len(out) > 0
	})
	t.Logf("revoke-ack -> istio-ca-crl ConfigMap: %s", took)
	require.Less(t, took, 5*time.Second, "revoke-ack -> ConfigMap")
	meshca(t, "revoke", "--dir", dir, "--generation", "1", "--reason", "cACompromise")
	cases = map[string]verdict{
		"generation 1 leaf": {gen1Leaf, false}, "good leaf": {good, true}, "revoked leaf": {bad, false},
	}
	waitFor(t, 10*time.Second, "generation 1 revoked in the ConfigMap", func() bool {
		_, ok := opensslVerifyCRLs(t, c.configMapCRL(t, "shop"), root, gen1Leaf[1], gen1Leaf[0])
		return !ok
	})
	requireVerdicts(t, "istio-ca-crl ConfigMap", c.configMapCRL(t, "shop"), root, cases)
	waitFor(t, 10*time.Second, "the Secret follows", func() bool { return string(c.secretCRL(t)) == string(c.configMapCRL(t, "shop")) })
	requireVerdicts(t, "cacerts Secret", c.secretCRL(t), root, cases)
	code, served := get(t, "http://"+s.ops+"/crl/ca-crl.pem")
	require.Equal(t, 200, code)
	require.Equal(t, string(c.configMapCRL(t, "shop")), served, "the distribution point serves exactly the published ca-crl.pem")

	s.sigterm(t)
	out := filepath.Join(t.TempDir(), "cacerts")
	meshca(t, "cacerts", "--dir", dir, "--out", out, "--crl")
	caCRL, err := os.ReadFile(filepath.Join(out, "ca-crl.pem"))
	require.NoError(t, err)
	requireVerdicts(t, "meshca cacerts", caCRL, root, cases)
}
