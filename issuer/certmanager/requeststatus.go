package certmanager

import (
	"context"
	"fmt"
	"strings"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmac "github.com/cert-manager/cert-manager/pkg/client/applyconfigurations/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// maxMessage bounds a condition message (engine errors quote caller input,
// already cut by identity.Quote; this keeps the whole line readable).
const maxMessage = 1024

// readyCondition is the Ready condition cert-manager's helper sets on cr:
// it keeps lastTransitionTime when the status does not change; a new
// transition is stamped with meshca's clock (the helper's is a package
// global of cert-manager).
func (r *RequestController) readyCondition(cr *cmapi.CertificateRequest, status cmmeta.ConditionStatus, reason, msg string) *cmac.CertificateRequestConditionApplyConfiguration {
	msg = truncate(msg)
	prev := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady)
	cp := cr.DeepCopy()
	apiutil.SetCertificateRequestCondition(cp, cmapi.CertificateRequestConditionReady, status, reason, msg)
	c := apiutil.GetCertificateRequestCondition(cp, cmapi.CertificateRequestConditionReady)
	if prev == nil || prev.Status != status || c.LastTransitionTime == nil {
		now := metav1.NewTime(r.o.Clock.Now())
		c.LastTransitionTime = &now
	}
	return cmac.CertificateRequestCondition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).WithMessage(c.Message).
		WithLastTransitionTime(*c.LastTransitionTime)
}

// apply writes st to cr's status: server-side apply on /status as "meshca".
// meshca owns the Ready condition and the fields it sets; the approver's
// Approved/Denied conditions stay the approver's.
func (r *RequestController) apply(ctx context.Context, cr *cmapi.CertificateRequest, st *cmac.CertificateRequestStatusApplyConfiguration) error {
	return r.applyAt(ctx, cr, "", st)
}

// applyAt is apply with a precondition: with rv set, the apiserver refuses
// the write (409 Conflict) unless the request is still at resourceVersion
// rv, so a status written after signing never overwrites one another
// replica wrote meanwhile (a lost Lease).
func (r *RequestController) applyAt(ctx context.Context, cr *cmapi.CertificateRequest, rv string, st *cmac.CertificateRequestStatusApplyConfiguration) error {
	ac := cmac.CertificateRequest(cr.Name, cr.Namespace).WithStatus(st)
	if rv != "" {
		ac.WithResourceVersion(rv)
	}
	if err := r.c.Status().Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("CertificateRequest %s/%s: write status: %w", cr.Namespace, cr.Name, err)
	}
	return nil
}

// deny marks a Denied request Ready=False/Denied with failureTime.
func (r *RequestController) deny(ctx context.Context, cr *cmapi.CertificateRequest) (kubesigner.Outcome, error) {
	st := cmac.CertificateRequestStatus().
		WithConditions(r.readyCondition(cr, cmmeta.ConditionFalse, cmapi.CertificateRequestReasonDenied, "The CertificateRequest was denied by an approval controller")).
		WithFailureTime(metav1.NewTime(r.o.Clock.Now()))
	if err := r.apply(ctx, cr, st); err != nil {
		return kubesigner.OutcomeError, err
	}
	return kubesigner.OutcomeDenied, nil
}

// fail marks a request that can never be signed Ready=False/Failed with
// failureTime; cert-manager then backs off before a new request.
func (r *RequestController) fail(ctx context.Context, cr *cmapi.CertificateRequest, msg string) (kubesigner.Outcome, error) {
	st := cmac.CertificateRequestStatus().
		WithConditions(r.readyCondition(cr, cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed, msg)).
		WithFailureTime(metav1.NewTime(r.o.Clock.Now()))
	if err := r.apply(ctx, cr, st); err != nil {
		return kubesigner.OutcomeError, err
	}
	r.events.Eventf(cr, nil, corev1.EventTypeWarning, "Failed", "Sign", "%s", truncate(msg))
	return kubesigner.OutcomeFailed, nil
}

// pending marks a request Ready=False/Pending (not a failure: it is
// retried), unless it already says exactly that.
func (r *RequestController) pending(ctx context.Context, cr *cmapi.CertificateRequest, msg string, cause error) (kubesigner.Outcome, error) {
	msg = truncate(msg)
	if c := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionReady); c != nil &&
		c.Status == cmmeta.ConditionFalse && c.Reason == cmapi.CertificateRequestReasonPending && c.Message == msg {
		return kubesigner.OutcomePending, nil
	}
	st := cmac.CertificateRequestStatus().WithConditions(r.readyCondition(cr, cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending, msg))
	if err := r.apply(ctx, cr, st); err != nil {
		return kubesigner.OutcomeError, err
	}
	if cause != nil {
		r.events.Eventf(cr, nil, corev1.EventTypeWarning, "Pending", "Sign", "%s", msg)
	}
	return kubesigner.OutcomePending, nil
}

// issue writes the certificate: leaf and intermediates in
// status.certificate (no root), the roots in the deprecated status.ca, and
// an Event for each thing granted differently from what was asked.
func (r *RequestController) issue(ctx context.Context, cr *cmapi.CertificateRequest, res *authority.Result) (kubesigner.Outcome, error) {
	st := cmac.CertificateRequestStatus().
		WithConditions(r.readyCondition(cr, cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued, "Certificate fetched from issuer successfully")).
		WithCertificate(kubesigner.ChainPEM(res, false)...)
	if n := len(res.Chain); n > 1 {
		st.WithCA([]byte(res.Chain[n-1])...)
	}
	// cr is the live request read before signing: if it changed since,
	// someone else settled it; the certificate signed here stays in the
	// issuance log, undelivered.
	key := client.ObjectKeyFromObject(cr)
	if err := r.applyAt(ctx, cr, cr.ResourceVersion, st); err != nil {
		if apierrors.IsConflict(err) {
			r.unwritten.Forget(key)
			r.o.Log.Warn("CertificateRequest changed while meshca signed it; its status is left as is", "namespace", cr.Namespace, "name", cr.Name, "serial", res.Record.Serial)
			return kubesigner.OutcomeIgnored, nil
		}
		// The retry writes this certificate instead of signing again.
		r.unwritten.Keep(key, cr.UID, res)
		return kubesigner.OutcomeError, err
	}
	r.unwritten.Forget(key)
	for _, a := range res.Adjustments {
		r.events.Eventf(cr, nil, corev1.EventTypeWarning, eventReason(a.Reason), "Sign", "%s", truncate(a.Message))
	}
	r.events.Eventf(cr, nil, corev1.EventTypeNormal, cmapi.CertificateRequestReasonIssued, "Sign", "Certificate serial %s issued, valid until %s",
		res.Record.Serial, res.Record.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	return kubesigner.OutcomeIssued, nil
}

// eventReason turns a policy reason (key_encipherment_dropped) into an
// Event reason (KeyEnciphermentDropped).
func eventReason(reason string) string {
	var b strings.Builder
	for p := range strings.SplitSeq(reason, "_") {
		if p != "" {
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}

func truncate(msg string) string {
	if len(msg) > maxMessage {
		return strings.ToValidUTF8(msg[:maxMessage], "") + "…"
	}
	return msg
}
