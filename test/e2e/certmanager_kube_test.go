package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
)

// TestServe_CertManagerIssuerSignsApprovedCertificateRequests runs the
// binary as istio-system/meshca under deploy/rbac (certmanager-issuer.yaml
// included) with signers.certManager on: a MeshIssuer becomes Ready, and
// a CertificateRequest shaped as cert-manager makes it for a Certificate
// (pki.GenerateCSR) is signed once Approved, with the namespace's SPIFFE
// identity, exactly the requested usages, the requested lifetime and a
// chain to the mesh root.
func TestServe_CertManagerIssuerSignsApprovedCertificateRequests(t *testing.T) {
	env, kubeconfig := meshcaInCluster(t, "shop")
	ctx := t.Context()
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, cmapi.AddToScheme(scheme))
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)

	// The approver role: cert-manager's ServiceAccount may approve
	// requests for meshca's issuers, and only those.
	for signer, want := range map[string]bool{
		// cert-manager's approval webhook asks for <resource>.<group>/*
		// first, then for the one issuer.
		"meshissuers.issuer.meshca.io/*":        true,
		"meshclusterissuers.issuer.meshca.io/*": true,
		"issuers.cert-manager.io/*":             false,
		"meshissuers.example.io/*":              false,
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:cert-manager:cert-manager",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:cert-manager", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: "cert-manager.io", Resource: "signers", Verb: "approve", Name: signer,
			},
		}}
		require.NoError(t, c.Create(ctx, sar))
		require.Equal(t, want, sar.Status.Allowed, "approve %s: %+v", signer, sar.Status)
	}

	dir := initCA(t)
	appendYAML(t, dir, "kubernetes:\n  kubeconfig: "+kubeconfig+"\n"+
		"signers:\n  certManager:\n    enabled: true\n    healthCheckInterval: 1s\n")
	s := startServe(t, dir)
	s.waitReady(t, 10*time.Second)

	iss := &v1alpha1.MeshIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mesh"}}
	require.NoError(t, c.Create(ctx, iss))
	require.Eventually(t, func() bool {
		if err := c.Get(ctx, client.ObjectKeyFromObject(iss), iss); err != nil {
			return false
		}
		r := meta.FindStatusCondition(iss.Status.Conditions, v1alpha1.ConditionReady)
		return r != nil && r.Status == metav1.ConditionTrue && r.Reason == v1alpha1.ReasonChecked && r.ObservedGeneration == iss.Generation
	}, 20*time.Second, 50*time.Millisecond, "MeshIssuer not Ready: %+v\n%s", iss.Status, s.logs())

	const id = "spiffe://cluster.local/ns/shop/sa/cart"
	usages := []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth, cmapi.UsageClientAuth}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl, err := pki.GenerateCSR(&cmapi.Certificate{Spec: cmapi.CertificateSpec{
		URIs: []string{id}, Usages: usages,
		PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
	}}, pki.WithEncodeBasicConstraintsInRequest(true))
	require.NoError(t, err)
	der, err := pki.EncodeCSR(tmpl, key)
	require.NoError(t, err)
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-1"},
		Spec: cmapi.CertificateRequestSpec{
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			IssuerRef: cmmeta.IssuerReference{Group: v1alpha1.Group, Kind: v1alpha1.KindMeshIssuer, Name: "mesh"},
			Usages:    usages,
			Duration:  &metav1.Duration{Duration: 6 * time.Hour},
		},
	}
	require.NoError(t, c.Create(ctx, cr))
	// cert-manager's approver would do this (no cert-manager runs here).
	now := metav1.Now()
	cr.Status.Conditions = []cmapi.CertificateRequestCondition{{
		Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue, Reason: "cert-manager.io", Message: "approved", LastTransitionTime: &now,
	}}
	require.NoError(t, c.Status().Update(ctx, cr))
	asked := time.Now()

	require.Eventually(t, func() bool {
		if err := c.Get(ctx, client.ObjectKeyFromObject(cr), cr); err != nil {
			return false
		}
		for _, cond := range cr.Status.Conditions {
			if cond.Type == cmapi.CertificateRequestConditionReady {
				require.NotEqual(t, cmapi.CertificateRequestReasonFailed, cond.Reason, cond.Message)
				return cond.Status == cmmeta.ConditionTrue && cond.Reason == cmapi.CertificateRequestReasonIssued
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "CertificateRequest not Issued: %+v\n%s", cr.Status, s.logs())

	chain := splitPEM(t, string(cr.Status.Certificate))
	require.Len(t, chain, 2, "leaf and intermediate, without the root")
	leaf := chain[0]
	// Identity: exactly the URI SAN asked for, nothing else.
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, id, leaf.URIs[0].String())
	require.Empty(t, leaf.DNSNames)
	require.Empty(t, leaf.Subject.CommonName)
	// Usages: keyEncipherment dropped for the ECDSA key (RFC 5480 §3).
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.IsCA)
	// Validity: the requested 6 h from signing, notBefore backdated by the policy.
	require.Equal(t, 6*time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))
	require.WithinDuration(t, asked.Add(6*time.Hour), leaf.NotAfter, 30*time.Second)
	// The chain verifies to the mesh root, which is status.ca.
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
	require.NoError(t, err)
	require.Equal(t, string(rootPEM), string(cr.Status.CA))
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	// Written by server-side apply on /status as meshca.
	var owned bool
	for _, mf := range cr.ManagedFields {
		if mf.Manager == "meshca" {
			owned = mf.Operation == metav1.ManagedFieldsOperationApply && mf.Subresource == "status"
		}
	}
	require.True(t, owned, "%+v", cr.ManagedFields)
	// The dropped keyEncipherment is told in an Event (meshca's RBAC allows it).
	require.Eventually(t, func() bool {
		var evs eventsv1.EventList
		if err := c.List(ctx, &evs, client.InNamespace("shop")); err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == "cart-1" && e.Reason == "KeyEnciphermentDropped" && e.ReportingController == "meshca" {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no KeyEnciphermentDropped Event:\n%s", s.logs())
}
