package certmanager_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/issuer/certmanager"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// poison creates obj (unstructured) and deletes it when the test ends.
func poison(t *testing.T, obj *unstructured.Unstructured) {
	t.Helper()
	require.NoError(t, env.CtrlClient.Create(t.Context(), obj), "the apiserver refused the object (then it cannot poison anything)")
	t.Cleanup(func() { _ = env.CtrlClient.Delete(context.Background(), obj) })
}

// freshManagerSyncs starts meshca's two cert-manager controllers on a
// new manager, as a restarted replica does, and reports whether its cache
// syncs within 20 s (controller-runtime gives up after CacheSyncTimeout,
// 2 min, and the manager's error then ends meshca serve:
// cmd/meshca/controllerswire.go startControllers).
func freshManagerSyncs(t *testing.T) bool {
	t.Helper()
	opts := certmanager.Options{Engine: h.eng, Check: h.eng.Check, TrustDomain: trustDomain}
	ic, err := certmanager.NewIssuerController(opts)
	require.NoError(t, err)
	rc, err := certmanager.NewRequestController(opts)
	require.NoError(t, err)
	mgr, err := kubesigner.NewManager(env.Config, kubesigner.ManagerOptions{Metrics: kubesigner.NewMetrics(prometheus.NewRegistry())}, ic, rc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			t.Logf("fresh manager stopped: %v", err)
		case <-time.After(15 * time.Second):
			t.Errorf("the fresh manager did not stop within 15 s of its context's end")
		}
	}()
	synced := true
	// CertificateRequests: the informer meshca's controller runs on (unstructured).
	cr := &unstructured.Unstructured{}
	cr.SetGroupVersionKind(cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateRequestKind))
	for _, obj := range []client.Object{&v1alpha1.MeshIssuer{}, &v1alpha1.MeshClusterIssuer{}, cr} {
		inf, err := mgr.GetCache().GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		require.NoError(t, err)
		deadline := time.Now().Add(20 * time.Second)
		for !inf.HasSynced() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !inf.HasSynced() {
			t.Logf("%T: informer not synced after 20 s", obj)
			synced = false
		}
	}
	return synced
}

// TestMeshIssuerBadMaxDurationRefusedCacheStillSyncs: spec.maxDuration is
// a metav1.Duration in meshca's typed informer, so a value Go cannot parse
// (or one that overflows time.Duration) would make the whole MeshIssuer
// list undecodable and a (re)started meshca's cache would never sync. The
// CRD refuses such values; a valid one is stored and a fresh manager syncs.
func TestMeshIssuerBadMaxDurationRefusedCacheStillSyncs(t *testing.T) {
	start(t)
	ns := namespace(t)
	require.True(t, freshManagerSyncs(t), "baseline: a fresh manager syncs")
	issuer := func(name, d string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": v1alpha1.KindMeshIssuer,
			"metadata": map[string]any{"namespace": ns, "name": name},
			"spec":     map[string]any{"maxDuration": d},
		}}
	}
	for i, d := range []string{"forever", "10000000h", "", "0s", "-1h", "1h1h1h1h1h", "99999h99999h99999h99999h99999h"} {
		err := env.CtrlClient.Create(t.Context(), issuer(fmt.Sprintf("evil-%d", i), d))
		if !apierrors.IsInvalid(err) {
			t.Errorf("maxDuration %q: want Invalid, got %v", d, err)
			if err == nil {
				t.Cleanup(func() { _ = env.CtrlClient.Delete(context.Background(), issuer(fmt.Sprintf("evil-%d", i), d)) })
			}
		}
	}
	poison(t, issuer("fine", "99999h99999h99999h99999h"))
	require.True(t, freshManagerSyncs(t), "with a valid maxDuration stored, a fresh manager syncs")
	// The running manager: a new, valid issuer in another namespace is checked.
	good := createIssuer(t, namespace(t), "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, good, v1alpha1.ReasonChecked)
}

// TestForeignCertificateRequestUndecodableCacheStillSyncs: the same with a
// cert-manager CertificateRequest whose spec.duration overflows
// time.Duration (10000000h); without cert-manager's webhook in the path
// (a bare CRD install, or the webhook failing open) the apiserver stores
// it, and meshca caches every CertificateRequest of the cluster, of any issuer.
func TestForeignCertificateRequestUndecodableCacheStillSyncs(t *testing.T) {
	start(t)
	ns := namespace(t)
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cmapi.SchemeGroupVersion.String(), "kind": cmapi.CertificateRequestKind,
		"metadata": map[string]any{"namespace": ns, "name": "not-even-ours"},
		"spec": map[string]any{
			"request":   "LS0tLS1CRUdJTg==", // any base64
			"issuerRef": map[string]any{"group": "other.example.com", "kind": "Other", "name": "x"},
			"duration":  "10000000h",
		},
	}}
	poison(t, u)
	require.True(t, freshManagerSyncs(t), "after one CertificateRequest (another issuer's) with duration 10000000h, meshca's manager cache never syncs")
	// The running controller still signs, and never wrote to the foreign request.
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	good := createRequest(t, crSpec{ns: ns, name: "good", uri: spiffeID(ns, "app"), issuer: meshIssuerRef("mesh"), approve: true})
	waitRequest(t, good, cmapi.CertificateRequestReasonIssued)
	got := u.DeepCopy()
	require.NoError(t, env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(u), got))
	require.Equal(t, u.GetResourceVersion(), got.GetResourceVersion(), "another issuer's request is never written")
}

// undecodableRequest is a request naming MeshIssuer mesh in ns whose spec
// cannot be decoded (spec.duration overflows time.Duration), created with
// the approver's condition typ (none when empty).
func undecodableRequest(t *testing.T, ns, name string, typ cmapi.CertificateRequestConditionType) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cmapi.SchemeGroupVersion.String(), "kind": cmapi.CertificateRequestKind,
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec": map[string]any{
			"request":   "LS0tLS1CRUdJTg==",
			"issuerRef": map[string]any{"group": v1alpha1.Group, "kind": v1alpha1.KindMeshIssuer, "name": "mesh"},
			"duration":  "10000000h",
		},
	}}
	poison(t, u)
	if typ != "" {
		require.NoError(t, unstructured.SetNestedSlice(u.Object, []any{map[string]any{
			"type": string(typ), "status": "True", "reason": "cert-manager.io", "message": "by test",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}, "status", "conditions"))
		require.NoError(t, env.CtrlClient.Status().Update(t.Context(), u))
	}
	return u
}

// readyOf waits for u's Ready condition (20 s) and returns it with the
// request's failureTime.
func readyOf(t *testing.T, u *unstructured.Unstructured) (map[string]any, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := u.DeepCopy()
		require.NoError(t, env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(u), got))
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if c := c.(map[string]any); c["type"] == "Ready" {
				ft, _, _ := unstructured.NestedString(got.Object, "status", "failureTime")
				return c, ft
			}
		}
		require.True(t, time.Now().Before(deadline), "the undecodable request of ours never got a Ready condition")
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOwnCertificateRequestUndecodableFails: an approved request naming a
// MeshIssuer that cannot be decoded can never be signed: it ends Failed
// with failureTime, and the controller goes on. Approval still comes
// first: a Denied one gets Denied, and one its approver has not decided on
// is left alone (nothing is written to it).
func TestOwnCertificateRequestUndecodableFails(t *testing.T) {
	start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	undecided := undecodableRequest(t, ns, "undecided", "")
	approved := undecodableRequest(t, ns, "ours-undecodable", cmapi.CertificateRequestConditionApproved)
	c, ft := readyOf(t, approved)
	require.Equal(t, "False", c["status"])
	require.Equal(t, cmapi.CertificateRequestReasonFailed, c["reason"])
	require.Contains(t, c["message"], "the CertificateRequest cannot be read")
	require.NotEmpty(t, ft, "failureTime is set")

	denied := undecodableRequest(t, ns, "denied", cmapi.CertificateRequestConditionDenied)
	c, ft = readyOf(t, denied)
	require.Equal(t, "False", c["status"])
	require.Equal(t, cmapi.CertificateRequestReasonDenied, c["reason"])
	require.NotEmpty(t, ft)

	good := createRequest(t, crSpec{ns: ns, name: "good", uri: spiffeID(ns, "app"), issuer: meshIssuerRef("mesh"), approve: true})
	waitRequest(t, good, cmapi.CertificateRequestReasonIssued)
	got := undecided.DeepCopy()
	require.NoError(t, env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(undecided), got))
	require.Equal(t, undecided.GetResourceVersion(), got.GetResourceVersion(), "a request its approver has not decided on is not written")
}

var _ client.Object = (*unstructured.Unstructured)(nil)
