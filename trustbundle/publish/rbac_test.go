package publish

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/root"
)

// canMeshca asks the apiserver, as admin, whether the meshca
// ServiceAccount may do attrs.
func canMeshca(t *testing.T, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + istiod + ":meshca",
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + istiod, "system:authenticated"},
		ResourceAttributes: &attrs,
	}}
	got, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(testContext(t), sar, metav1.CreateOptions{})
	require.NoError(t, err)
	return got.Status.Allowed
}

func TestRBAC_MeshcaServiceAccountHasExactlyTrustDistributionRights(t *testing.T) {
	meshcaClient(t) // applies deploy/rbac
	allowed := map[string]authorizationv1.ResourceAttributes{
		"get cacerts in istiod's namespace":    {Namespace: istiod, Verb: "get", Resource: "secrets", Name: SecretName},
		"watch cacerts in istiod's namespace":  {Namespace: istiod, Verb: "watch", Resource: "secrets", Name: SecretName},
		"create Secrets in istiod's namespace": {Namespace: istiod, Verb: "create", Resource: "secrets"},
		"patch ConfigMaps anywhere":            {Namespace: "default", Verb: "patch", Resource: "configmaps"},
		"delete the PQ anchors ConfigMap":      {Namespace: istiod, Verb: "delete", Resource: "configmaps", Name: PQAnchorsConfigMapName},
		"watch namespaces":                     {Verb: "watch", Resource: "namespaces"},
		"create Events":                        {Namespace: "default", Verb: "create", Resource: "events"},
		"delete ClusterTrustBundles":           {Group: "certificates.k8s.io", Verb: "delete", Resource: "clustertrustbundles"},
		"attest meshca.io/workload":            {Group: "certificates.k8s.io", Verb: "attest", Resource: "signers", Name: "meshca.io/workload"},
		"attest istio.io/istiod-ca":            {Group: "certificates.k8s.io", Verb: "attest", Resource: "signers", Name: IstiodSignerName},
	}
	denied := map[string]authorizationv1.ResourceAttributes{
		"get Secrets in another namespace":        {Namespace: "default", Verb: "get", Resource: "secrets", Name: SecretName},
		"list Secrets in another namespace":       {Namespace: "default", Verb: "list", Resource: "secrets"},
		"get other Secrets in istiod's namespace": {Namespace: istiod, Verb: "get", Resource: "secrets", Name: "istio-ca-secret"},
		"list all Secrets in istiod's namespace":  {Namespace: istiod, Verb: "list", Resource: "secrets"},
		"delete cacerts":                          {Namespace: istiod, Verb: "delete", Resource: "secrets", Name: SecretName},
		"delete ConfigMaps":                       {Namespace: "default", Verb: "delete", Resource: "configmaps"},
		"delete Istio's root ConfigMap":           {Namespace: istiod, Verb: "delete", Resource: "configmaps", Name: RootConfigMapName},
		"delete a PQ anchors ConfigMap elsewhere": {Namespace: "default", Verb: "delete", Resource: "configmaps", Name: PQAnchorsConfigMapName},
		"update namespaces":                       {Verb: "update", Resource: "namespaces"},
		"attest an unrelated signer":              {Group: "certificates.k8s.io", Verb: "attest", Resource: "signers", Name: "other.io/x"},
		"attest every signer of a domain":         {Group: "certificates.k8s.io", Verb: "attest", Resource: "signers", Name: "meshca.io/*"},
		"approve CertificateSigningRequests":      {Group: "certificates.k8s.io", Verb: "approve", Resource: "signers", Name: "meshca.io/workload"},
	}
	waitFor(t, restoreTime, "RBAC in effect", func() error {
		for name, attrs := range allowed {
			if !canMeshca(t, attrs) {
				return fmt.Errorf("meshca may not %s", name)
			}
		}
		return nil
	})
	for name, attrs := range denied {
		require.False(t, canMeshca(t, attrs), "meshca must not %s", name)
	}
}

// The apiserver itself refuses: reading a Secret elsewhere, and writing a
// bundle for a signer meshca may not attest.
func TestRBAC_MeshcaServiceAccountIsForbiddenOutsideItsGrant(t *testing.T) {
	ctx := testContext(t)
	c := meshcaClient(t)
	_, err := c.CoreV1().Secrets("default").Get(ctx, "anything", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "reading a Secret in default: %v", err)
	_, err = c.CoreV1().Secrets(istiod).List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "listing every Secret in %s: %v", istiod, err)

	ca := newTestCA(t, "X")
	_, err = c.CertificatesV1().ClusterTrustBundles().Create(ctx, &certificatesv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: "other.io:x:roots"},
		Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: "other.io/x", TrustBundle: string(root.EncodePEM(ca.root))},
	}, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "bundle for other.io/x: %v", err)
	require.Contains(t, err.Error(), "attest")
}
