package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/test/kubeenv"
)

// TestServe_SignsIstiodRACSRsUnderLeastPrivilegeRBAC runs the binary under
// deploy/rbac with signers.csr on, and a client acting as istiod's
// ServiceAccount (with deploy/examples/istiod-ra-rbac.yaml) does what
// istiod's RA does (security/pkg/k8s/chiron SignCSRK8s): it creates a
// CertificateSigningRequest with generateName csr-workload-, the four
// usages and expirationSeconds 3600, approves it itself and reads
// status.certificate.
func TestServe_SignsIstiodRACSRsUnderLeastPrivilegeRBAC(t *testing.T) {
	env, s, dir, istiodCfg := csrSignerInCluster(t)
	ctx := t.Context()
	istiod, err := kubernetes.NewForConfig(istiodCfg)
	require.NoError(t, err)

	id := "spiffe://cluster.local/ns/shop/sa/cart"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(id)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	require.NoError(t, err)
	exp := int32(3600)
	csrs := istiod.CertificatesV1().CertificateSigningRequests()
	csr, err := csrs.Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-workload-"},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: "meshca.io/workload",
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment,
				certv1.UsageServerAuth, certv1.UsageClientAuth},
			ExpirationSeconds: &exp,
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:istio-system:istiod", csr.Spec.Username)
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "approved", Message: "CSR (" + csr.Name + ") for the certificate () is approved",
	})
	approvedAt := time.Now().Truncate(time.Second)
	_, err = csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		csr, err = csrs.Get(ctx, csr.Name, metav1.GetOptions{})
		require.NoError(t, err)
		return len(csr.Status.Certificate) > 0
	}, 10*time.Second, 20*time.Millisecond, "no certificate:\n%s", s.logs())
	signedAt := time.Now()
	for _, c := range csr.Status.Conditions {
		require.NotEqual(t, certv1.CertificateFailed, c.Type)
	}

	certs := splitPEM(t, string(csr.Status.Certificate))
	require.GreaterOrEqual(t, len(certs), 2)
	leaf := certs[0]
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, id, leaf.URIs[0].String())
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage, "keyEncipherment dropped for the ECDSA key")
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.NotAfter.Before(approvedAt.Add(time.Hour)), "notAfter %s", leaf.NotAfter)
	require.False(t, leaf.NotAfter.After(signedAt.Add(time.Hour)), "notAfter %s", leaf.NotAfter)
	require.False(t, leaf.NotBefore.After(signedAt))

	// The chain verifies to the mesh root that istiod's caCertFile holds
	// (the istio-ca-root-cert ConfigMap meshca publishes), with the rest of
	// status.certificate as intermediates, as istiod's RA verifies it.
	rootPEM := publishedRoot(t, env, s, dir)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		require.NotEqual(t, c.RawSubject, c.RawIssuer, "no root in status.certificate: istiod appends its caCertFile")
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)

	// The adjustment is an Event on the request (events.k8s.io/v1, in default).
	require.Eventually(t, func() bool {
		l, err := env.Client.EventsV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, e := range l.Items {
			if e.Regarding.Name == csr.Name && e.Reason == "KeyEnciphermentDropped" {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no KeyEnciphermentDropped Event:\n%s", s.logs())

	// istiod deletes the request once it has the certificate.
	require.NoError(t, csrs.Delete(ctx, csr.Name, metav1.DeleteOptions{}))
}

// TestServe_IstiodKubernetesRAAcceptsMeshcaChain drives istiod's own RA
// code (istio.io/istio security/pkg/pki/ra KubernetesRA.SignWithCertChain,
// built by test/tools/testbin.sh as bin/istiod-ra) against meshca serve:
// istiod creates, approves, waits for and deletes the request itself, and
// answers with meshca's leaf and intermediate and, as the last element, its
// caCertFile: the mesh root, as mounted from the istio-ca-root-cert
// ConfigMap meshca publishes.
func TestServe_IstiodKubernetesRAAcceptsMeshcaChain(t *testing.T) {
	repo, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	ra := filepath.Join(repo, "bin", "istiod-ra", "istiod-ra")
	_, err = os.Stat(ra)
	require.NoError(t, err, "istiod's RA is built by 'make testbin' (bash test/tools/testbin.sh istiod-ra)")
	env, s, dir, istiodCfg := csrSignerInCluster(t)
	work := t.TempDir()
	kubeconfig := filepath.Join(work, "istiod-kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, tokenKubeconfig(t, istiodCfg), 0o600))
	rootPEM := publishedRoot(t, env, s, dir)
	caCertFile := filepath.Join(work, "root-cert.pem") // /etc/external-ca-cert/root-cert.pem
	require.NoError(t, os.WriteFile(caCertFile, rootPEM, 0o644))
	id := "spiffe://cluster.local/ns/shop/sa/cart"
	csr := writeCSR(t, work, id) // istio-agent's shape, which istiod's RA validates

	cmd := exec.Command(ra, "-kubeconfig", kubeconfig, "-signer", "meshca.io/workload", "-ca-cert-file", caCertFile,
		"-csr", csr, "-identity", id, "-ttl", "1h")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now().Truncate(time.Second)
	out, err := cmd.Output()
	require.NoError(t, err, "istiod's RA: %s\nmeshca:\n%s", stderr.String(), s.logs())
	end := time.Now()
	var resp struct{ Chain []string }
	require.NoError(t, json.Unmarshal(out, &resp))

	require.Equal(t, 3, len(resp.Chain), "leaf, meshca's intermediate, the root")
	require.Equal(t, string(rootPEM), resp.Chain[2], "istiod's last element is its caCertFile, the mesh root")
	leaf := splitPEM(t, resp.Chain[0])[0]
	require.Equal(t, id, leaf.URIs[0].String())
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.NotAfter.Before(start.Add(time.Hour)), "notAfter %s", leaf.NotAfter)
	require.False(t, leaf.NotAfter.After(end.Add(time.Hour)), "notAfter %s", leaf.NotAfter)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM([]byte(resp.Chain[2])))
	inter := x509.NewCertPool()
	inter.AddCert(splitPEM(t, resp.Chain[1])[0])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)

	// istiod deleted its request.
	l, err := env.Client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, l.Items)
}

// csrSignerInCluster starts meshca serve under deploy/rbac (csr-signer.yaml
// included) with signers.csr on for meshca.io/workload and istiod's
// ServiceAccount, and returns that ServiceAccount's rest.Config with the
// RBAC of deploy/examples/istiod-ra-rbac.yaml.
func csrSignerInCluster(t *testing.T) (*kubeenv.Env, *server, string, *rest.Config) {
	t.Helper()
	env, kubeconfig := meshcaInCluster(t, "shop")
	ctx := t.Context()
	repo, err := kubeenv.RepoRoot()
	require.NoError(t, err)
	_, err = env.ApplyYAMLFile(ctx, filepath.Join(repo, "deploy", "examples", "istiod-ra-rbac.yaml"))
	require.NoError(t, err)
	istiodCfg, _, err := env.ClientAs(ctx, "istio-system", "istiod")
	require.NoError(t, err)

	dir := initCA(t)
	cfg := filepath.Join(dir, "meshca.yaml")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	b = append(b, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\ntrustBundle:\n  enabled: true\n"+
		"signers:\n  csr:\n    enabled: true\n    signerNames: [meshca.io/workload]\n"+
		"    allowedRequesters: [system:serviceaccount:istio-system:istiod]\n")...)
	require.NoError(t, os.WriteFile(cfg, b, 0o644))
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)
	return env, s, dir, istiodCfg
}

// publishedRoot waits for the istio-ca-root-cert ConfigMap to hold the
// mesh root (root-cert.pem of dir) and returns it.
func publishedRoot(t *testing.T, env *kubeenv.Env, s *server, dir string) []byte {
	t.Helper()
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cm, err := env.Client.CoreV1().ConfigMaps("shop").Get(t.Context(), "istio-ca-root-cert", metav1.GetOptions{})
		return err == nil && cm.Data["root-cert.pem"] == string(rootPEM)
	}, 10*time.Second, 50*time.Millisecond, "istio-ca-root-cert not published:\n%s", s.logs())
	return rootPEM
}
