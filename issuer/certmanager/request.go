package certmanager

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// issuerIndex indexes meshca's CertificateRequests by the issuer they name.
const issuerIndex = "meshca.issuer"

// RequestController signs cert-manager CertificateRequests for
// MeshIssuers and MeshClusterIssuers.
type RequestController struct {
	o      Options
	td     spiffeid.TrustDomain
	c      client.Client
	cache  client.Reader // CertificateRequests, unstructured (see Cache)
	live   client.Reader
	events recorder.EventRecorder
	m      *kubesigner.Metrics
	// unwritten keeps a certificate whose status write failed, for the
	// retry (after the request's checks again) to write instead of
	// signing again.
	unwritten kubesigner.Unwritten[*authority.Result]
}

// unwrittenMaxAge is how long a certificate whose status write failed is
// written again rather than signed afresh (its lifetime runs meanwhile).
const unwrittenMaxAge = 10 * time.Minute

// NewRequestController returns the "certificaterequest" controller;
// o.Engine and o.TrustDomain are required.
func NewRequestController(o Options) (*RequestController, error) {
	if o.Engine == nil {
		return nil, errors.New("certmanager: the CertificateRequest controller needs a signing engine")
	}
	td, err := trustDomain(o.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("certmanager: %w", err)
	}
	o.init()
	return &RequestController{o: o, td: td, unwritten: kubesigner.Unwritten[*authority.Result]{MaxAge: unwrittenMaxAge, Clock: o.Clock}}, nil
}

// Name implements kubesigner.Controller.
func (*RequestController) Name() string { return RequestControllerName }

// AddToScheme implements kubesigner.Controller.
func (*RequestController) AddToScheme(s *runtime.Scheme) error { return addToScheme(s) }

// Cache implements kubesigner.Controller: every CertificateRequest of the
// cluster is cached (the apiserver cannot select them by issuer group), so
// the cache keeps of other issuers' requests only what tells that they are
// not meshca's (see trimForeign). CertificateRequest is cert-manager's
// type, and the apiserver stores whatever its CRD schema admits (e.g. a
// spec.duration that overflows Go's time.Duration when cert-manager's
// webhook is not in the path): a typed informer would fail to decode the
// whole list and never sync, stopping every controller of the manager. So
// requests are cached unstructured, and decoded one by one in Reconcile.
func (*RequestController) Cache() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{newUnstructuredRequest(): {Transform: trimForeign}}
}

// newUnstructuredRequest is an empty unstructured CertificateRequest.
func newUnstructuredRequest() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateRequestKind))
	return u
}

// trimForeign drops from a cached CertificateRequest what meshca never
// reads: managed fields, and of another issuer's request its spec and
// status but for the issuerRef. A request that becomes meshca's arrives
// whole in the update that changes its issuerRef.
func trimForeign(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	u.SetManagedFields(nil)
	if group, _, _ := unstructured.NestedString(u.Object, "spec", "issuerRef", "group"); group != v1alpha1.Group {
		ref, _, _ := unstructured.NestedFieldCopy(u.Object, "spec", "issuerRef")
		spec := map[string]any{}
		if ref != nil {
			spec["issuerRef"] = ref
		}
		u.Object["spec"] = spec
		delete(u.Object, "status")
	}
	return u, nil
}

// decodeRequest decodes a CertificateRequest read unstructured. If its
// spec cannot be decoded, it returns the error and a request holding only
// the metadata and (when it decodes) the status, enough to write a status.
func decodeRequest(u *unstructured.Unstructured) (*cmapi.CertificateRequest, error) {
	cr := &cmapi.CertificateRequest{}
	err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cr)
	if err == nil {
		return cr, nil
	}
	cr = &cmapi.CertificateRequest{}
	cr.SetGroupVersionKind(u.GroupVersionKind())
	cr.Name, cr.Namespace, cr.UID, cr.ResourceVersion = u.GetName(), u.GetNamespace(), u.GetUID(), u.GetResourceVersion()
	if st, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(st, &cr.Status)
	}
	if g, _, _ := unstructured.NestedString(u.Object, "spec", "issuerRef", "group"); g != "" {
		cr.Spec.IssuerRef.Group = g
	}
	return cr, err
}

// SetupWithManager implements kubesigner.Controller. A change of an issuer
// (its Ready condition, its spec) requeues the requests that name it, so a
// request waiting for its issuer is signed once the issuer is ready.
func (r *RequestController) SetupWithManager(mgr ctrl.Manager, m *kubesigner.Metrics) error {
	r.c, r.cache, r.live, r.m = mgr.GetClient(), mgr.GetCache(), mgr.GetAPIReader(), m
	r.events = mgr.GetEventRecorder(FieldManager)
	r.unwritten.Reset() // a new term: another holder may have settled them
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), newUnstructuredRequest(), issuerIndex, func(o client.Object) []string {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			return nil
		}
		cr, _ := decodeRequest(u)
		if k := issuerKey(cr); k != "" {
			return []string{k}
		}
		return nil
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(RequestControllerName).
		For(newUnstructuredRequest()).
		Watches(&v1alpha1.MeshIssuer{}, handler.EnqueueRequestsFromMapFunc(r.requestsOf(v1alpha1.KindMeshIssuer))).
		Watches(&v1alpha1.MeshClusterIssuer{}, handler.EnqueueRequestsFromMapFunc(r.requestsOf(v1alpha1.KindMeshClusterIssuer))).
		WithOptions(kubesigner.ControllerOptions(m, workers)).
		Complete(r)
}

// issuerKind is the kind a request of ours names ("" means MeshIssuer).
func issuerKind(cr *cmapi.CertificateRequest) string {
	if cr.Spec.IssuerRef.Kind == "" {
		return v1alpha1.KindMeshIssuer
	}
	return cr.Spec.IssuerRef.Kind
}

// issuerKey is the index key of the issuer cr names, "" if not ours.
func issuerKey(cr *cmapi.CertificateRequest) string {
	if cr.Spec.IssuerRef.Group != v1alpha1.Group {
		return ""
	}
	switch k := issuerKind(cr); k {
	case v1alpha1.KindMeshClusterIssuer:
		return k + "/" + cr.Spec.IssuerRef.Name
	case v1alpha1.KindMeshIssuer:
		return k + "/" + cr.Namespace + "/" + cr.Spec.IssuerRef.Name
	}
	return ""
}

func (r *RequestController) requestsOf(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		key := kind + "/" + o.GetName()
		if kind == v1alpha1.KindMeshIssuer {
			key = kind + "/" + o.GetNamespace() + "/" + o.GetName()
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateRequestKind + "List"))
		if err := r.cache.List(ctx, list, client.MatchingFields{issuerIndex: key}); err != nil {
			r.o.Log.Error("listing the CertificateRequests of an issuer", "issuer", key, "error", err)
			return nil
		}
		var reqs []reconcile.Request
		for i := range list.Items {
			if cr, _ := decodeRequest(&list.Items[i]); !finished(cr) {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
		return reqs
	}
}

// finished reports whether meshca is done with cr: it has a certificate
// or a final Ready condition (Issued, Failed, Denied). It is never touched again.
func finished(cr *cmapi.CertificateRequest) bool {
	if len(cr.Status.Certificate) > 0 || cr.Status.FailureTime != nil {
		return true
	}
	switch apiutil.CertificateRequestReadyReason(cr) {
	case cmapi.CertificateRequestReasonIssued, cmapi.CertificateRequestReasonFailed, cmapi.CertificateRequestReasonDenied:
		return true
	}
	return false
}

// Reconcile runs the canonical external-issuer loop for one CertificateRequest.
func (r *RequestController) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := r.o.Clock.Now()
	outcome, err := r.reconcile(ctx, req)
	r.m.Observe(RequestControllerName, outcome, r.o.Clock.Since(start).Seconds())
	return reconcile.Result{}, err
}

func (r *RequestController) reconcile(ctx context.Context, req reconcile.Request) (kubesigner.Outcome, error) {
	u := newUnstructuredRequest()
	if err := r.cache.Get(ctx, req.NamespacedName, u); err != nil {
		if apierrors.IsNotFound(err) {
			r.unwritten.Forget(req.NamespacedName)
			return kubesigner.OutcomeIgnored, nil
		}
		return kubesigner.OutcomeError, err
	}
	cr, derr := decodeRequest(u)
	// Ours only when the group is exactly issuer.meshca.io; nothing else
	// is read or written.
	if cr.Spec.IssuerRef.Group != v1alpha1.Group || finished(cr) {
		r.unwritten.Forget(req.NamespacedName)
		return kubesigner.OutcomeIgnored, nil
	}
	// Approval first (its status decodes even when the spec does not):
	// nothing is written to a request before its approver decided.
	if apiutil.CertificateRequestIsDenied(cr) {
		return r.deny(ctx, cr)
	}
	if !apiutil.CertificateRequestIsApproved(cr) {
		return kubesigner.OutcomeIgnored, nil // cert-manager's approver decides first
	}
	if derr != nil {
		// Only an apiserver without cert-manager's webhook stores such a
		// request; it can never be signed.
		return r.fail(ctx, cr, "the CertificateRequest cannot be read: "+derr.Error())
	}

	kind := issuerKind(cr)
	if kind != v1alpha1.KindMeshIssuer && kind != v1alpha1.KindMeshClusterIssuer {
		return r.fail(ctx, cr, fmt.Sprintf("spec.issuerRef.kind %s is not %s or %s", identity.Quote(kind), v1alpha1.KindMeshIssuer, v1alpha1.KindMeshClusterIssuer))
	}
	iss, err := getIssuer(ctx, r.c, kind, client.ObjectKey{Namespace: cr.Namespace, Name: cr.Spec.IssuerRef.Name})
	if apierrors.IsNotFound(err) {
		name := cr.Spec.IssuerRef.Name
		if kind == v1alpha1.KindMeshIssuer {
			name = cr.Namespace + "/" + name
		}
		// The issuer watch requeues the request once the issuer exists.
		return r.pending(ctx, cr, fmt.Sprintf("%s %s does not exist; the request is signed once it exists and is ready", kind, identity.Quote(name)), nil)
	}
	if err != nil {
		return kubesigner.OutcomeError, err
	}
	if iss.ready() == nil {
		return r.pending(ctx, cr, fmt.Sprintf("%s is not ready (%s); the request is signed once it is", iss.describe(), readyText(iss)), nil)
	}

	signReq, msg := r.checkRequest(cr, iss)
	if msg != "" {
		return r.fail(ctx, cr, msg)
	}

	// The cache may lag behind a status meshca wrote moments ago: read the
	// request live before signing, so that it is signed at most once.
	lu := newUnstructuredRequest()
	if err := r.live.Get(ctx, req.NamespacedName, lu); err != nil {
		if apierrors.IsNotFound(err) {
			return kubesigner.OutcomeIgnored, nil
		}
		return kubesigner.OutcomeError, err
	}
	live, err := decodeRequest(lu)
	if err != nil || live.Spec.IssuerRef.Group != v1alpha1.Group {
		return kubesigner.OutcomeIgnored, nil // changed since; the next event decides
	}
	if finished(live) || !apiutil.CertificateRequestIsApproved(live) || apiutil.CertificateRequestIsDenied(live) {
		return kubesigner.OutcomeIgnored, nil // the next event decides
	}

	if res, ok := r.unwritten.Get(req.NamespacedName, live.UID); ok {
		return r.issue(ctx, live, res) // signed before; writing it failed
	}
	res, err := r.o.Engine.Sign(ctx, signReq)
	if err != nil {
		if kubesigner.Transient(err) {
			out, werr := r.pending(ctx, live, "meshca cannot sign right now, retrying: "+err.Error(), err)
			if werr != nil {
				return out, werr
			}
			return kubesigner.OutcomePending, fmt.Errorf("signing %s/%s: %w", cr.Namespace, cr.Name, err)
		}
		if live.Spec.IsCA {
			// The engine issues leaves only (its intermediate has
			// pathLenConstraint 0, RFC 5280 §4.2.1.9), whatever the issuer allows.
			return r.fail(ctx, live, "meshca refused to sign a CA certificate (spec.isCA): "+err.Error())
		}
		return r.fail(ctx, live, "meshca refused to sign: "+err.Error())
	}
	return r.issue(ctx, live, res)
}

// checkRequest validates cr against its issuer and builds the signing
// request; a non-empty message is a permanent failure.
func (r *RequestController) checkRequest(cr *cmapi.CertificateRequest, iss *issuerObject) (authority.Request, string) {
	if cr.Spec.IsCA && !iss.spec.AllowCA {
		return authority.Request{}, fmt.Sprintf("spec.isCA is set but %s does not allow CA certificates (its spec.allowCA is false)", iss.describe())
	}
	if n := len(cr.Spec.Request); n == 0 || n > policy.MaxCSRSize {
		return authority.Request{}, fmt.Sprintf("spec.request is %d bytes; it must hold one PEM CSR of at most %d bytes", n, policy.MaxCSRSize)
	}
	// cert-manager's CSR-to-template check: the CSR must parse, its
	// signature verify, and its BasicConstraints and key usages (when it
	// carries them) agree with spec.isCA and spec.usages.
	if _, err := pki.CertificateTemplateFromCertificateRequest(cr); err != nil {
		return authority.Request{}, "spec.request is not a valid CSR for this request: " + err.Error()
	}
	csr, err := pki.DecodeX509CertificateRequestBytes(cr.Spec.Request)
	if err != nil {
		return authority.Request{}, "spec.request is not a PEM CSR: " + err.Error()
	}
	id, msg := r.identityOf(cr, csr)
	if msg != "" {
		return authority.Request{}, msg
	}
	usages := cr.Spec.Usages
	if len(usages) == 0 {
		usages = cmapi.DefaultKeyUsages()
	}
	pu := make([]policy.Usage, 0, len(usages))
	for _, u := range usages {
		if u == cmapi.UsageSigning { // cert-manager's synonym of digital signature
			u = cmapi.UsageDigitalSignature
		}
		pu = append(pu, policy.Usage(u))
	}
	d := policy.Duration{Requested: apiutil.DefaultCertDuration(cr.Spec.Duration)}
	if iss.spec.MaxDuration != nil {
		d.Max = iss.spec.MaxDuration.Duration
	}
	opts := []policy.SignOption{policy.WithUsages(pu...), policy.WithDuration(d)}
	if cr.Spec.IsCA {
		opts = append(opts, policy.RequestCA(iss.spec.AllowCA))
	}
	return authority.Request{
		CSR: csr.Raw, Identity: id, Profile: profile.Name(iss.spec.Profile), Options: opts,
		Requester: "certmanager:" + cr.Namespace + "/" + cr.Name,
	}, ""
}

// identityOf is the identity cr may get: the CSR's one URI SAN, a
// Kubernetes ServiceAccount identity of the mesh's trust domain in cr's
// own namespace.
func (r *RequestController) identityOf(cr *cmapi.CertificateRequest, csr *x509.CertificateRequest) (*url.URL, string) {
	want := fmt.Sprintf("spiffe://%s/ns/%s/sa/<name>", r.td.Name(), cr.Namespace)
	if len(csr.URIs) != 1 {
		return nil, fmt.Sprintf("the CSR has %d URI SANs; it needs exactly one, %s", len(csr.URIs), want)
	}
	id, err := identity.WorkloadURL(csr.URIs[0], r.td)
	if err != nil {
		var fe *identity.ForeignError
		if errors.As(err, &fe) {
			return nil, fmt.Sprintf("the CSR's URI SAN is in a foreign trust domain: %v; it must be %s", err, want)
		}
		return nil, fmt.Sprintf("the CSR's URI SAN is not a workload SPIFFE ID: %v; it must be %s", err, want)
	}
	k, ok := identity.KubernetesOf(id)
	if !ok || k.Namespace != cr.Namespace {
		return nil, fmt.Sprintf("the CSR's URI SAN %s is not an identity of the request's namespace; it must be %s", identity.Quote(id.String()), want)
	}
	return id.URL(), ""
}
