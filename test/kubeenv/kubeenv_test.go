package kubeenv_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshca/meshca/test/kubeenv"
)

var env *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &env)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestStart_ServesKubernetesVersion(t *testing.T) {
	v, err := env.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v"+kubeenv.KubeVersion {
		t.Fatalf("server version = %q, want v%s", v.GitVersion, kubeenv.KubeVersion)
	}
}

func TestStart_InstallsCertManagerCRDs(t *testing.T) {
	names := map[string]bool{}
	for _, crd := range env.CRDs {
		names[crd.Name] = true
	}
	for _, want := range []string{"certificaterequests.cert-manager.io", "issuers.cert-manager.io", "clusterissuers.cert-manager.io"} {
		if !names[want] {
			t.Errorf("CRD %s not installed; installed: %v", want, names)
		}
	}
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("cert-manager.io/v1")
	list.SetKind("CertificateRequestList")
	if err := env.CtrlClient.List(ctx(t), list); err != nil {
		t.Fatalf("listing cert-manager.io/v1 CertificateRequests: %v", err)
	}
	if len(list.Items) != 0 {
		t.Fatalf("got %d CertificateRequests, want 0", len(list.Items))
	}
}

func TestMintToken_ReviewsAsServiceAccountForIstioCA(t *testing.T) {
	c := ctx(t)
	token, err := env.MintToken(c, "smoke-token", "workload", []string{"istio-ca"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
		Token:     token,
		Audiences: []string{"istio-ca"},
	}}
	got, err := env.Client.AuthenticationV1().TokenReviews().Create(c, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Status.Authenticated {
		t.Fatalf("token not authenticated: %q", got.Status.Error)
	}
	if want := "system:serviceaccount:smoke-token:workload"; got.Status.User.Username != want {
		t.Fatalf("username = %q, want %q", got.Status.User.Username, want)
	}
	if len(got.Status.Audiences) != 1 || got.Status.Audiences[0] != "istio-ca" {
		t.Fatalf("audiences = %v, want [istio-ca]", got.Status.Audiences)
	}

	// The same token must not review for another audience.
	tr.Spec.Audiences = []string{"not-istio-ca"}
	got, err = env.Client.AuthenticationV1().TokenReviews().Create(c, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Authenticated {
		t.Fatalf("token reviewed as authenticated for audience not-istio-ca: %+v", got.Status.User)
	}
}

func TestMintPodToken_ReviewCarriesPodNameAndUID(t *testing.T) {
	c := ctx(t)
	if _, err := env.CreateNode(c, "smoke-node"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), "smoke-node", metav1.DeleteOptions{})
	})
	pod, err := env.CreatePod(c, "smoke-pod", "web-0", "web", "smoke-node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Pods("smoke-pod").Delete(context.Background(), "web-0", *metav1.NewDeleteOptions(0))
	})
	if pod.Spec.NodeName != "smoke-node" || pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod nodeName=%q phase=%q, want smoke-node Running", pod.Spec.NodeName, pod.Status.Phase)
	}
	token, err := env.MintPodToken(c, pod, []string{"istio-ca"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"istio-ca"}}}
	got, err := env.Client.AuthenticationV1().TokenReviews().Create(c, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Status.Authenticated || got.Status.User.Username != "system:serviceaccount:smoke-pod:web" {
		t.Fatalf("review = authenticated %v user %q (%q), want system:serviceaccount:smoke-pod:web",
			got.Status.Authenticated, got.Status.User.Username, got.Status.Error)
	}
	extra := got.Status.User.Extra
	if n := extra["authentication.kubernetes.io/pod-name"]; len(n) != 1 || n[0] != "web-0" {
		t.Fatalf("pod-name extra = %v, want [web-0]", n)
	}
	if u := extra["authentication.kubernetes.io/pod-uid"]; len(u) != 1 || u[0] != string(pod.UID) {
		t.Fatalf("pod-uid extra = %v, want [%s]", u, pod.UID)
	}
}

func TestClusterTrustBundleV1_CreateAndList(t *testing.T) {
	c := ctx(t)
	ctb := &certificatesv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: "meshca.io:workload:smoke"},
		Spec: certificatesv1.ClusterTrustBundleSpec{
			SignerName:  "meshca.io/workload",
			TrustBundle: selfSignedCAPEM(t),
		},
	}
	if _, err := env.Client.CertificatesV1().ClusterTrustBundles().Create(c, ctb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), ctb.Name, metav1.DeleteOptions{})
	})
	list, err := env.Client.CertificatesV1().ClusterTrustBundles().List(c, metav1.ListOptions{
		FieldSelector: "spec.signerName=meshca.io/workload",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != ctb.Name || list.Items[0].Spec.TrustBundle != ctb.Spec.TrustBundle {
		t.Fatalf("listed %d bundles %+v, want exactly %s with the same PEM", len(list.Items), list.Items, ctb.Name)
	}
}

func TestClientAs_ServiceAccountWithoutRBACIsForbidden(t *testing.T) {
	c := ctx(t)
	_, cs, err := env.ClientAs(c, "smoke-rbac", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Secrets("smoke-rbac").List(c, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets without RBAC: err = %v, want 403 Forbidden", err)
	}
	status := err.(apierrors.APIStatus).Status()
	if status.Code != 403 {
		t.Fatalf("status code = %d, want 403", status.Code)
	}
	if want := `secrets is forbidden: User "system:serviceaccount:smoke-rbac:nobody" cannot list resource "secrets" in API group "" in the namespace "smoke-rbac"`; status.Message != want {
		t.Fatalf("message = %q, want %q", status.Message, want)
	}
}

func TestApplyYAMLFile_GrantsRBACToServiceAccount(t *testing.T) {
	c := ctx(t)
	manifest := `
apiVersion: v1
kind: Namespace
metadata:
  name: smoke-apply
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: secret-reader
  namespace: smoke-apply
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader
  namespace: smoke-apply
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: secret-reader
subjects:
- kind: ServiceAccount
  name: reader
  namespace: smoke-apply
`
	path := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := env.ApplyYAMLFile(c, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("applied %d objects, want 3", len(objs))
	}
	rb, err := env.Client.RbacV1().RoleBindings("smoke-apply").Get(c, "reader", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "secret-reader"}); rb.RoleRef != want {
		t.Fatalf("roleRef = %+v, want %+v", rb.RoleRef, want)
	}
	// Applying again is idempotent.
	if _, err := env.ApplyYAMLFile(c, path); err != nil {
		t.Fatalf("second apply: %v", err)
	}

	_, cs, err := env.ClientAs(c, "smoke-apply", "reader")
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := cs.CoreV1().Secrets("smoke-apply").List(c, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing secrets with RBAC: %v", err)
	}
	if len(secrets.Items) != 0 {
		t.Fatalf("got %d secrets, want 0", len(secrets.Items))
	}
	if _, err := cs.CoreV1().Secrets("default").List(c, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets in another namespace: err = %v, want Forbidden", err)
	}
}

// TestRestartAPIServer_KeepsDataAndCredentials runs last among the tests
// that share env (Go runs tests in source order) because it takes the
// apiserver down for a moment.
func TestRestartAPIServer_KeepsDataAndCredentials(t *testing.T) {
	c := ctx(t)
	if err := env.CreateNamespace(c, "smoke-restart"); err != nil {
		t.Fatal(err)
	}
	token, err := env.MintToken(c, "smoke-restart", "survivor", []string{"istio-ca"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, saClient, err := env.ClientAs(c, "smoke-restart", "survivor")
	if err != nil {
		t.Fatal(err)
	}

	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().Namespaces().Get(c, "smoke-restart", metav1.GetOptions{}); err == nil {
		t.Fatal("apiserver still answers after StopAPIServer")
	}
	if err := env.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}

	if _, err := env.Client.CoreV1().Namespaces().Get(c, "smoke-restart", metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace created before the restart: %v", err)
	}
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"istio-ca"}}}
	got, err := env.Client.AuthenticationV1().TokenReviews().Create(c, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Status.Authenticated || got.Status.User.Username != "system:serviceaccount:smoke-restart:survivor" {
		t.Fatalf("token minted before the restart: authenticated=%v user=%q (%q)",
			got.Status.Authenticated, got.Status.User.Username, got.Status.Error)
	}
	// The ServiceAccount client built before the restart still authenticates
	// (it is forbidden, not unauthorized).
	if _, err := saClient.CoreV1().Secrets("smoke-restart").List(c, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("ServiceAccount client after restart: err = %v, want Forbidden", err)
	}
}

func TestStart_MissingBinariesFailLoudly(t *testing.T) {
	_, err := kubeenv.Start(kubeenv.WithAssetsDir(t.TempDir()))
	if err == nil {
		t.Fatal("Start with an empty assets dir succeeded")
	}
	if want := "run `make testbin`"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func selfSignedCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubeenv smoke root"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
