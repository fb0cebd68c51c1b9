package podcert_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authzv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshca/meshca/issuer/podcert"
)

// TestKnownLimit_RequestForgedByANonNodeWithRealUIDsIsIssued documents
// what meshca cannot stop: a tenant who may create PodCertificateRequests
// in its namespace (but cannot run pods as ServiceAccount "payments")
// names a running pod of "payments" with its real pod, ServiceAccount and
// node UIDs and its own key. kube-apiserver admits it (only the Node
// authorizer and NodeRestriction bind a kubelet's requests to its own
// pods), and every live check meshca makes (pod, node and ServiceAccount
// UIDs) passes, so the tenant gets payments' identity. The boundary is
// RBAC: nobody but the kubelets may hold create on podcertificaterequests
// (deploy/rbac/podcert-signer.yaml, README). If this test ever fails, the
// apiserver or meshca learned to tell; update the docs.
func TestKnownLimit_RequestForgedByANonNodeWithRealUIDsIsIssued(t *testing.T) {
	ctx := context.Background()
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{})
	ns := "review-forge"
	victim := newWorkload(t, ns, "victim", "payments")

	// The tenant: a ServiceAccount with create/get on podcertificaterequests in its own namespace only.
	_, err := kube.ApplyYAML(ctx, []byte(fmt.Sprintf(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pcr-creator, namespace: %[1]s}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [podcertificaterequests]
  verbs: [create, get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pcr-creator, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pcr-creator}
subjects:
- {kind: ServiceAccount, name: tenant, namespace: %[1]s}
`, ns)))
	require.NoError(t, err)
	_, tenant, err := kube.ClientAs(ctx, ns, "tenant")
	require.NoError(t, err)

	key := p256(t) // the tenant's own key
	pcr := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "forged-"},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName:         s.name,
			PodName:            victim.pod.Name,
			PodUID:             victim.pod.UID,
			ServiceAccountName: victim.sa.Name,
			ServiceAccountUID:  victim.sa.UID,
			NodeName:           types.NodeName(victim.node.Name),
			NodeUID:            victim.node.UID,
			StubPKCS10Request:  stubCSR(t, key),
		},
	}
	var created *certificatesv1.PodCertificateRequest
	require.Eventually(t, func() bool { // the RoleBinding takes a moment to apply
		created, err = tenant.CertificatesV1().PodCertificateRequests(ns).Create(ctx, pcr, metav1.CreateOptions{})
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "the apiserver refused the tenant's PCR: %v", err)
	t.Logf("apiserver ADMITTED a PCR created by system:serviceaccount:%s:tenant naming pod %s (SA %s)", ns, victim.pod.Name, victim.sa.Name)

	got, cond := waitFinished(t, s, created)
	require.Equal(t, "Issued", cond.Type, cond.Message)
	b, _ := pem.Decode([]byte(got.Status.CertificateChain))
	leaf, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/"+ns+"/sa/payments", leaf.URIs[0].String(), "the tenant holds payments' identity: only RBAC on create stops this")
}

// TestDeny_EndedOrTerminatingPods: a pod that has Succeeded or Failed,
// or is being deleted, needs no new identity: its requests are denied
// PodNotRunning, and nothing is signed. A Pending pod (the kubelet asks
// before its containers start) is still issued.
func TestDeny_EndedOrTerminatingPods(t *testing.T) {
	ctx := context.Background()
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{})
	require.NoError(t, kube.CreateNamespace(ctx, "ended"))
	for name, tc := range map[string]struct {
		mutate  func(*workload)
		message string
	}{
		"succeeded": {func(w *workload) {
			w.pod.Status.Phase = corev1.PodSucceeded
			_, err := kube.Client.CoreV1().Pods(w.pod.Namespace).UpdateStatus(ctx, w.pod, metav1.UpdateOptions{})
			require.NoError(t, err)
		}, "pod ended/job-succeeded has ended (phase Succeeded): it gets no new certificate"},
		"failed": {func(w *workload) {
			w.pod.Status.Phase = corev1.PodFailed
			_, err := kube.Client.CoreV1().Pods(w.pod.Namespace).UpdateStatus(ctx, w.pod, metav1.UpdateOptions{})
			require.NoError(t, err)
		}, "pod ended/job-failed has ended (phase Failed): it gets no new certificate"},
		"deleting": {func(w *workload) {
			// A finalizer keeps the pod, with its deletionTimestamp set (no kubelet runs).
			pod, err := kube.Client.CoreV1().Pods(w.pod.Namespace).Get(ctx, w.pod.Name, metav1.GetOptions{})
			require.NoError(t, err)
			pod.Finalizers = append(pod.Finalizers, "meshca.io/test")
			_, err = kube.Client.CoreV1().Pods(w.pod.Namespace).Update(ctx, pod, metav1.UpdateOptions{})
			require.NoError(t, err)
			require.NoError(t, kube.Client.CoreV1().Pods(w.pod.Namespace).Delete(ctx, w.pod.Name, metav1.DeleteOptions{}))
			t.Cleanup(func() {
				p, err := kube.Client.CoreV1().Pods(w.pod.Namespace).Get(ctx, w.pod.Name, metav1.GetOptions{})
				if err == nil {
					p.Finalizers = nil
					_, _ = kube.Client.CoreV1().Pods(w.pod.Namespace).Update(ctx, p, metav1.UpdateOptions{})
				}
			})
		}, "pod ended/job-deleting is being deleted: it gets no new certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorkload(t, "ended", "job-"+name, "batch-"+name)
			tc.mutate(w)
			got, cond := waitFinished(t, s, w.request(t, s.name, p256(t), nil))
			require.Equal(t, "Denied", cond.Type, cond.Message)
			require.Equal(t, podcert.ReasonPodNotRunning, cond.Reason)
			require.Equal(t, tc.message, cond.Message)
			require.Empty(t, got.Status.CertificateChain)
		})
	}
	require.Zero(t, c.records(t, "podcertificate:"), "nothing was signed")
}

// TestBuiltinRoles_DoNotGrantCreateOnRequests: the README tells operators
// that only kubelets should create PodCertificateRequests, because whoever
// may create them can mint any ServiceAccount identity of the namespace
// (TestKnownLimit_RequestForgedByANonNodeWithRealUIDsIsIssued). That advice
// is enough only while the built-in namespace roles admin and edit do not
// grant the verb; if a Kubernetes release aggregates it into them, this
// fails and the documentation (and the signer) must change.
func TestBuiltinRoles_DoNotGrantCreateOnRequests(t *testing.T) {
	ctx := context.Background()
	ns := "review-roles"
	require.NoError(t, kube.CreateNamespace(ctx, ns))
	for _, role := range []string{"admin", "edit"} {
		sa := "as-" + role
		_, err := kube.ApplyYAML(ctx, []byte(fmt.Sprintf(`
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: %[2]s, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %[3]s}
subjects:
- {kind: ServiceAccount, name: %[2]s, namespace: %[1]s}
`, ns, sa, role)))
		require.NoError(t, err)
		_, cs, err := kube.ClientAs(ctx, ns, sa)
		require.NoError(t, err)
		var allowed bool
		require.Eventually(t, func() bool {
			r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "certificates.k8s.io", Resource: "podcertificaterequests"},
			}}, metav1.CreateOptions{})
			if err != nil {
				return false
			}
			allowed = r.Status.Allowed
			return true
		}, 10*time.Second, 100*time.Millisecond)
		require.False(t, allowed, "ClusterRole %s bound in a namespace grants create on podcertificaterequests", role)
	}
}

// TestDeny_ManyLongUnknownUserAnnotationsMessageIsBounded: a pod author
// controls spec.unverifiedUserAnnotations (the podCertificate volume's
// userAnnotations). With hundreds of long keys, a message quoting every
// key would exceed the 32 KiB a condition message may have, the status
// write would be Invalid, and the request would be retried forever. The
// message names the first keys and how many more; it is bounded.
func TestDeny_ManyLongUnknownUserAnnotationsMessageIsBounded(t *testing.T) {
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{})
	w := newWorkload(t, "review-annotations", "chatty", "app")
	label := strings.Repeat("a", 60)
	ann := map[string]string{}
	for i := range 200 {
		ann[fmt.Sprintf("k%03d.%s.%s.%s.example.com/%s", i, label, label, label, strings.Repeat("n", 63))] = "v"
	}
	pcr := w.request(t, s.name, p256(t), func(sp *certificatesv1.PodCertificateRequestSpec) { sp.UnverifiedUserAnnotations = ann })
	t.Cleanup(func() {
		t.Logf("reconcile outcomes: error=%v denied=%v", s.outcomes(t, "error"), s.outcomes(t, "denied"))
	})
	_, cond := waitFinished(t, s, pcr)
	require.Equal(t, "Denied", cond.Type)
	require.Equal(t, podcert.ReasonInvalidUserAnnotations, cond.Reason)
	require.Contains(t, cond.Message, "spec.unverifiedUserAnnotations has keys meshca does not recognise: ")
	require.Regexp(t, `, and 19[0-9] more \(meshca recognises none; signers.podCertificates.userAnnotations\)$`, cond.Message)
	require.LessOrEqual(t, len(cond.Message), 2048+len("…"))
	require.Zero(t, s.outcomes(t, "error"), "the status write was never refused")
}
