package certmanager

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// IssuerController keeps the Ready condition of every MeshIssuer and
// MeshClusterIssuer.
type IssuerController struct {
	o Options
	c client.Client
	m *kubesigner.Metrics
}

// NewIssuerController returns the "meshissuer" controller; o.Check is required.
func NewIssuerController(o Options) (*IssuerController, error) {
	if o.Check == nil {
		return nil, errors.New("certmanager: the issuer controller needs a health check")
	}
	o.init()
	return &IssuerController{o: o}, nil
}

// Name implements kubesigner.Controller.
func (*IssuerController) Name() string { return IssuerControllerName }

// AddToScheme implements kubesigner.Controller.
func (*IssuerController) AddToScheme(s *runtime.Scheme) error { return addToScheme(s) }

// Cache implements kubesigner.Controller.
func (*IssuerController) Cache() map[client.Object]cache.ByObject { return noCacheRestrictions() }

// SetupWithManager implements kubesigner.Controller. A MeshClusterIssuer
// is reconciled under an empty namespace. Only spec changes (a new
// generation) trigger a check; the periodic re-check covers the rest, so
// meshca's own status writes do not loop.
func (r *IssuerController) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	r.c, r.m = mgr.GetClient(), m
	gen := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	return ctrl.NewControllerManagedBy(mgr).
		Named(IssuerControllerName).
		For(&v1alpha1.MeshIssuer{}, gen).
		Watches(&v1alpha1.MeshClusterIssuer{}, &handler.EnqueueRequestForObject{}, gen).
		WithOptions(kubesigner.ControllerOptions(m, workers)).
		Complete(r)
}

// issuerObject is a MeshIssuer or a MeshClusterIssuer.
type issuerObject struct {
	obj  client.Object
	kind string
	spec *v1alpha1.MeshIssuerSpec
	st   *v1alpha1.MeshIssuerStatus
}

// getIssuer reads the issuer named by key (empty namespace: a MeshClusterIssuer).
func getIssuer(ctx context.Context, c client.Reader, kind string, key client.ObjectKey) (*issuerObject, error) {
	if kind == v1alpha1.KindMeshClusterIssuer {
		o := &v1alpha1.MeshClusterIssuer{}
		if err := c.Get(ctx, client.ObjectKey{Name: key.Name}, o); err != nil {
			return nil, err
		}
		return &issuerObject{obj: o, kind: kind, spec: &o.Spec, st: &o.Status}, nil
	}
	o := &v1alpha1.MeshIssuer{}
	if err := c.Get(ctx, key, o); err != nil {
		return nil, err
	}
	return &issuerObject{obj: o, kind: v1alpha1.KindMeshIssuer, spec: &o.Spec, st: &o.Status}, nil
}

// describe names the issuer for messages: MeshIssuer shop/mesh, MeshClusterIssuer mesh.
func (i *issuerObject) describe() string {
	if i.obj.GetNamespace() == "" {
		return i.kind + " " + i.obj.GetName()
	}
	return i.kind + " " + i.obj.GetNamespace() + "/" + i.obj.GetName()
}

// ready returns the issuer's Ready condition when it is True for the
// current generation, else nil.
func (i *issuerObject) ready() *metav1.Condition {
	c := meta.FindStatusCondition(i.st.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != i.obj.GetGeneration() {
		return nil
	}
	return c
}

// Reconcile checks one issuer and writes its Ready condition if it changed.
func (r *IssuerController) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := r.o.Clock.Now()
	res, outcome, err := r.reconcile(ctx, req)
	r.m.Observe(IssuerControllerName, outcome, r.o.Clock.Since(start).Seconds())
	return res, err
}

func (r *IssuerController) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, kubesigner.Outcome, error) {
	kind := v1alpha1.KindMeshIssuer
	if req.Namespace == "" {
		kind = v1alpha1.KindMeshClusterIssuer
	}
	iss, err := getIssuer(ctx, r.c, kind, req.NamespacedName)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{}, kubesigner.OutcomeIgnored, nil
	}
	if err != nil {
		return reconcile.Result{}, kubesigner.OutcomeError, err
	}
	gen := iss.obj.GetGeneration()
	if cur := meta.FindStatusCondition(iss.st.Conditions, v1alpha1.ConditionReady); cur == nil || cur.ObservedGeneration != gen {
		// First sight of this generation: say so before checking.
		if err := r.setReady(ctx, iss, metav1.ConditionFalse, v1alpha1.ReasonInitializing, "meshca is checking the issuer"); err != nil {
			return reconcile.Result{}, kubesigner.OutcomeError, err
		}
	}
	status, reason, msg := r.check(iss.spec)
	if err := r.setReady(ctx, iss, status, reason, msg); err != nil {
		return reconcile.Result{}, kubesigner.OutcomeError, err
	}
	switch reason {
	case v1alpha1.ReasonPending:
		return reconcile.Result{RequeueAfter: min(pendingRecheck, r.o.HealthCheckInterval)}, kubesigner.OutcomePending, nil
	case v1alpha1.ReasonFailed:
		return reconcile.Result{RequeueAfter: r.o.HealthCheckInterval}, kubesigner.OutcomeFailed, nil
	}
	return reconcile.Result{RequeueAfter: r.o.HealthCheckInterval}, kubesigner.OutcomeChecked, nil
}

// check judges an issuer's spec and the engine's readiness for it.
func (r *IssuerController) check(spec *v1alpha1.MeshIssuerSpec) (metav1.ConditionStatus, string, string) {
	if spec.Profile != "" && !profile.Name(spec.Profile).Valid() {
		return metav1.ConditionFalse, v1alpha1.ReasonFailed, fmt.Sprintf("spec.profile %q is not one of %v", spec.Profile, profile.All)
	}
	if spec.MaxDuration != nil && spec.MaxDuration.Duration <= 0 {
		return metav1.ConditionFalse, v1alpha1.ReasonFailed, fmt.Sprintf("spec.maxDuration %s must be positive, e.g. 24h", spec.MaxDuration.Duration)
	}
	if err := r.o.Check(profile.Name(spec.Profile)); err != nil {
		if kubesigner.Transient(err) {
			return metav1.ConditionFalse, v1alpha1.ReasonPending, "meshca cannot sign right now: " + err.Error()
		}
		return metav1.ConditionFalse, v1alpha1.ReasonFailed, "meshca cannot sign for this issuer: " + err.Error()
	}
	what := "meshca's default profile"
	if spec.Profile != "" {
		what = "the " + spec.Profile + " profile"
	}
	return metav1.ConditionTrue, v1alpha1.ReasonChecked, "meshca can sign certificates of " + what
}

// setReady applies the Ready condition to the issuer's status (server-side
// apply on /status), unless it already says exactly that.
func (r *IssuerController) setReady(ctx context.Context, iss *issuerObject, status metav1.ConditionStatus, reason, msg string) error {
	msg = truncate(msg)
	gen := iss.obj.GetGeneration()
	cur := meta.FindStatusCondition(iss.st.Conditions, v1alpha1.ConditionReady)
	if cur != nil && cur.Status == status && cur.Reason == reason && cur.Message == msg && cur.ObservedGeneration == gen {
		return nil
	}
	cond := metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(r.o.Clock.Now()),
	}
	if cur != nil && cur.Status == status {
		cond.LastTransitionTime = cur.LastTransitionTime
	}
	c, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cond)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       iss.kind,
		"metadata":   map[string]any{"name": iss.obj.GetName()},
		"status":     map[string]any{"conditions": []any{c}},
	}}
	if ns := iss.obj.GetNamespace(); ns != "" {
		u.SetNamespace(ns)
	}
	if err := r.c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("%s: write status: %w", iss.describe(), err)
	}
	// Keep the in-memory copy current for a second write in the same reconcile.
	meta.SetStatusCondition(&iss.st.Conditions, cond)
	return nil
}

// readyText is an issuer's Ready condition for a request's Pending message.
func readyText(iss *issuerObject) string {
	c := meta.FindStatusCondition(iss.st.Conditions, v1alpha1.ConditionReady)
	switch {
	case c == nil:
		return "not checked yet"
	case c.ObservedGeneration != iss.obj.GetGeneration():
		return "its current spec is not checked yet"
	}
	return strings.TrimSpace(c.Reason + ": " + c.Message)
}
