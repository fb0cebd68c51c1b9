package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/test/kubeenv"
)

// meshClusterState is what one cluster holds of meshca's trust material,
// read back from its apiserver.
type meshClusterState struct {
	cacerts map[string][]byte // nil: no cacerts Secret
	rootCM  string            // istio-ca-root-cert in shop
	crlCM   []byte            // istio-ca-crl's ca-crl.pem in shop
}

func readMeshCluster(t *testing.T, env *kubeenv.Env) meshClusterState {
	t.Helper()
	ctx := context.Background()
	var st meshClusterState
	s, err := env.Client.CoreV1().Secrets("istio-system").Get(ctx, "cacerts", metav1.GetOptions{})
	switch {
	case err == nil:
		st.cacerts = s.Data
	case !apierrors.IsNotFound(err):
		require.NoError(t, err)
	}
	if cm, err := env.Client.CoreV1().ConfigMaps("shop").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{}); err == nil {
		st.rootCM = cm.Data["root-cert.pem"]
	}
	if cm, err := env.Client.CoreV1().ConfigMaps("shop").Get(ctx, "istio-ca-crl", metav1.GetOptions{}); err == nil {
		st.crlCM = []byte(cm.Data["ca-crl.pem"])
	}
	return st
}

// istiodLeaf signs a workload certificate with a cacerts Secret's
// ca-cert.pem and ca-key.pem, as the cluster's istiod does as a plug-in
// CA, and returns it with the intermediate.
func istiodLeaf(t *testing.T, cacerts map[string][]byte, id string) (leaf, inter *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	inters, err := root.ParseCertificates(cacerts["ca-cert.pem"])
	require.NoError(t, err)
	require.Len(t, inters, 1)
	inter = inters[0]
	block, _ := pem.Decode(cacerts["ca-key.pem"])
	require.NotNil(t, block, "ca-key.pem is PEM")
	caKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	require.NoError(t, err)
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{}, URIs: []*url.URL{u},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, inter, key.Public(), caKey)
	require.NoError(t, err)
	leaf, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	return leaf, inter, key
}

// TestClusters_PlugInAndMeshcaSignsAcrossTwoApiservers runs meshca outside
// any cluster with two real apiservers in its clusters list: "east" a
// plug-in cluster, whose istiod signs with an intermediate of its own in
// its cacerts Secret, and "west" a meshca-signs cluster, whose proxies ask
// the Istio endpoint (clusterid west selects west's TokenReview). Leaves
// from both verify under the shared root with openssl; every cluster gets
// the same root set and the same ca-crl.pem; revoking east's intermediate
// makes openssl verify -crl_check_all reject east's leaves with west's
// published ca-crl.pem and keeps west's leaves valid. The deprecated
// kubernetes.remoteClusters feeds the same TokenReview map (clusterid
// legacy, west again).
func TestClusters_PlugInAndMeshcaSignsAcrossTwoApiservers(t *testing.T) {
	east, eastKC := meshcaInCluster(t, "shop")
	west, westKC := meshcaInCluster(t, "shop")
	dir := initCA(t)
	appendYAML(t, dir, "clusters:\n"+
		"  - {id: east, kubeconfig: "+eastKC+", mode: plug-in}\n"+
		"  - {id: west, kubeconfig: "+westKC+", mode: meshca-signs}\n"+
		// The deprecated alias feeds the same TokenReview map.
		"kubernetes:\n  remoteClusters:\n    legacy: "+westKC+"\n")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	rootCert := splitPEM(t, string(rootPEM))[0]

	// east: cacerts with its own intermediate; west: no cacerts. Both: the
	// roots and ca-crl.pem in their namespaces.
	var es, ws meshClusterState
	waitFor(t, 20*time.Second, "east's cacerts and both clusters' ConfigMaps", func() bool {
		es, ws = readMeshCluster(t, east), readMeshCluster(t, west)
		return es.cacerts != nil && len(es.cacerts["ca-crl.pem"]) > 0 && es.rootCM != "" && len(es.crlCM) > 0 && ws.rootCM != "" && len(ws.crlCM) > 0
	})
	require.Nil(t, ws.cacerts, "meshca signs for west: no intermediate key leaves meshca there")
	for name, env := range map[string]*kubeenv.Env{"east": east, "west": west} {
		waitFor(t, 20*time.Second, name+"'s ClusterTrustBundle holds the roots", func() bool {
			b, err := env.Client.CertificatesV1().ClusterTrustBundles().Get(context.Background(), "meshca.io:workload:roots", metav1.GetOptions{})
			return err == nil && b.Spec.TrustBundle == string(rootPEM)
		})
	}
	require.Equal(t, string(rootPEM), string(es.cacerts["root-cert.pem"]))
	require.Equal(t, string(rootPEM), es.rootCM)
	require.Equal(t, string(rootPEM), ws.rootCM, "every cluster gets the same root set")
	eastInter := splitPEM(t, string(es.cacerts["ca-cert.pem"]))[0]
	require.Equal(t, "meshca intermediate cluster east", eastInter.Subject.CommonName)
	require.Equal(t, string(es.cacerts["ca-cert.pem"])+string(rootPEM), string(es.cacerts["cert-chain.pem"]), "cert-chain.pem: the intermediate up to the root")
	require.True(t, eastInter.IsCA)
	out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "root-cert.pem"), writeTemp(t, "ca-cert.pem", es.cacerts["ca-cert.pem"])).CombinedOutput()
	require.NoError(t, err, "east's intermediate verifies under the shared root: %s", out)

	// A leaf of east's istiod and one meshca issues to a west proxy.
	eastLeaf, _, eastKey := istiodLeaf(t, es.cacerts, "spiffe://cluster.local/ns/shop/sa/east-app")
	// east's key is in east's Secret: a certificate signed with it does not
	// authenticate at meshca's own endpoint.
	requireClientCertRefused(t, s, string(rootPEM), eastLeaf, eastInter, eastKey)
	westChain := westIssue(t, s, west, "west", string(rootPEM))
	westIssue(t, s, west, "legacy", string(rootPEM))
	// east's clusterid selects no TokenReview: its istiod signs.
	_, err = issueAs(t, s, west, "east", string(rootPEM))
	require.ErrorContains(t, err, "Unauthenticated")
	require.Equal(t, "meshca intermediate", westChain[1].Subject.CommonName)
	require.NotEqual(t, eastInter.Raw, westChain[1].Raw, "east has its own intermediate")
	cases := map[string]verdict{
		"east leaf": {chain: []*x509.Certificate{eastLeaf, eastInter}, accept: true},
		"west leaf": {chain: westChain, accept: true},
	}
	requireVerdicts(t, "west's ca-crl.pem before the revocation", ws.crlCM, rootCert, cases)
	requireVerdicts(t, "east's ca-crl.pem before the revocation", es.cacerts["ca-crl.pem"], rootCert, cases)

	// Revoke east's intermediate: rotate it away (the active one cannot be
	// revoked), then revoke it as compromised.
	out2 := meshca(t, "rotate", "intermediate", "--dir", dir, "--signer", "cluster:east")
	require.Contains(t, out2, "CN=meshca intermediate cluster east")
	meshca(t, "revoke", "--dir", dir, "--serial", serialOf(eastInter), "--reason", "cACompromise")
	cases["east leaf"] = verdict{chain: cases["east leaf"].chain, accept: false}
	// Within the bound of the revocation path (revoke-ack -> istio-ca-crl
	// ConfigMap <= 5 s), in the other cluster too.
	waitFor(t, 5*time.Second, "west's published ca-crl.pem rejects east's old leaves", func() bool {
		ws = readMeshCluster(t, west)
		_, ok := opensslVerifyCRLs(t, ws.crlCM, rootCert, eastInter, eastLeaf)
		return !ok
	})
	requireVerdicts(t, "west's ca-crl.pem after revoking east's intermediate", ws.crlCM, rootCert, cases)

	// east's cacerts now carries its new intermediate, with a ca-crl.pem
	// that rejects the revoked one's leaves too; leaves of the new one verify.
	waitFor(t, 20*time.Second, "east's cacerts carries its new intermediate", func() bool {
		es = readMeshCluster(t, east)
		cs, err := root.ParseCertificates(es.cacerts["ca-cert.pem"])
		return err == nil && !cs[0].Equal(eastInter)
	})
	newInter := splitPEM(t, string(es.cacerts["ca-cert.pem"]))[0]
	require.Equal(t, eastInter.Subject.String(), newInter.Subject.String())
	require.Equal(t, string(rootPEM), string(es.cacerts["root-cert.pem"]))
	newLeaf, _, _ := istiodLeaf(t, es.cacerts, "spiffe://cluster.local/ns/shop/sa/east-app")
	cases["east leaf, new intermediate"] = verdict{chain: []*x509.Certificate{newLeaf, newInter}, accept: true}
	requireVerdicts(t, "east's cacerts ca-crl.pem after the revocation", es.cacerts["ca-crl.pem"], rootCert, cases)
	ws = readMeshCluster(t, west)
	requireVerdicts(t, "west's ca-crl.pem after east's rotation", ws.crlCM, rootCert, cases)

	// meshca status reports east's intermediate rotation apart.
	var doc statusDoc
	require.NoError(t, json.Unmarshal([]byte(meshca(t, "status", "--dir", dir, "-o", "json")), &doc))
	require.Contains(t, string(doc.Rotation), `"intermediate:cluster:east"`)
}

// westIssue asks the Istio endpoint for a certificate as a proxy of the
// meshca-signs cluster west does: a token of west's apiserver and the
// clusterid header clusterID. It returns the chain: leaf, intermediate.
func westIssue(t *testing.T, s *server, west *kubeenv.Env, clusterID, rootsPEM string) []*x509.Certificate {
	t.Helper()
	resp, err := issueAs(t, s, west, clusterID, rootsPEM)
	require.NoError(t, err, s.logs())
	require.Len(t, resp.CertChain, 3)
	require.Equal(t, rootsPEM, resp.CertChain[2])
	return []*x509.Certificate{splitPEM(t, resp.CertChain[0])[0], splitPEM(t, resp.CertChain[1])[0]}
}

// issueAs calls CreateCertificate with a token of env's shop/cart and the
// clusterid header clusterID.
func issueAs(t *testing.T, s *server, env *kubeenv.Env, clusterID, rootsPEM string) (*pb.IstioCertificateResponse, error) {
	t.Helper()
	ctx := context.Background()
	token, err := env.MintToken(ctx, "shop", "cart", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM([]byte(rootsPEM)))
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: servingName})))
	require.NoError(t, err)
	defer conn.Close()
	csr, _ := agentStyleCSR(t, "spiffe://cluster.local/ns/shop/sa/cart")
	meta, err := structpb.NewStruct(map[string]any{"CertSigner": ""})
	require.NoError(t, err)
	cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token, "clusterid", clusterID), 10*time.Second)
	defer cancel()
	return pb.NewIstioCertificateServiceClient(conn).CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600, Metadata: meta})
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// requireClientCertRefused presents leaf (signed by inter) as a client
// certificate to the Istio endpoint, without a token: it must be refused.
func requireClientCertRefused(t *testing.T, s *server, rootsPEM string, leaf, inter *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM([]byte(rootsPEM)))
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: key}
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: servingName, Certificates: []tls.Certificate{cert}})))
	require.NoError(t, err)
	defer conn.Close()
	csr, _ := agentStyleCSR(t, "spiffe://cluster.local/ns/shop/sa/east-app")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600})
	require.ErrorContains(t, err, "Unauthenticated")
}
