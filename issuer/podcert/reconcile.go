package podcert

import (
	"context"
	"crypto/rsa"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// Condition reasons. UnsupportedKeyType and InvalidUnverifiedUserAnnotations
// are the API's own (certificates.k8s.io/v1 well-known reasons); the others
// are meshca's.
const (
	ReasonUnsupportedKeyType     = certificatesv1.PodCertificateRequestConditionUnsupportedKeyType
	ReasonInvalidUserAnnotations = certificatesv1.PodCertificateRequestConditionInvalidUserConfig
	// ReasonPodNotFound: the pod named in the request does not exist.
	ReasonPodNotFound = "PodNotFound"
	// ReasonPodMismatch: the live pod is another one (UID), runs as another
	// ServiceAccount or on another node than the request says.
	ReasonPodMismatch = "PodMismatch"
	// ReasonPodNotRunning: the pod has ended (phase Succeeded or Failed)
	// or is being deleted; it needs no new identity.
	ReasonPodNotRunning = "PodNotRunning"
	// ReasonNodeMismatch: the node named in the request does not exist or
	// has another UID.
	ReasonNodeMismatch = "NodeMismatch"
	// ReasonServiceAccountMismatch: the ServiceAccount does not exist or
	// has another UID (it was deleted and recreated).
	ReasonServiceAccountMismatch = "ServiceAccountMismatch"
	// ReasonInvalidRequest: the stub CSR does not parse or its signature
	// does not verify (no proof of possession of the key).
	ReasonInvalidRequest = "InvalidStubPKCS10Request"
	// ReasonPolicyDenied: meshca's issuance policy refused the request.
	ReasonPolicyDenied = "PolicyDenied"
	// ReasonIssued is the reason of the Issued condition.
	ReasonIssued = "Issued"
	// ReasonSigningFailed: the engine failed for good (not transiently).
	ReasonSigningFailed = "SigningFailed"
	// ReasonCertificateRejected: kube-apiserver refused the issued
	// certificate's status (e.g. meshca's clock is off by more than the
	// 5 minutes it tolerates on notBefore).
	ReasonCertificateRejected = "CertificateRejected"
)

// suggestedKeyType is what a denial for an unsupported key suggests
// (the API lets the signer suggest a key type in the message).
const suggestedKeyType = "ECDSAP256"

type reconciler struct {
	o      Options
	td     spiffeid.TrustDomain
	m      *kubesigner.Metrics
	client client.Client
	// live reads from the apiserver, not the cache: the pod and the
	// ServiceAccount must be current.
	live client.Reader
	// unwritten keeps an issued status whose write failed, for the retry
	// (after the pod checks again) to write instead of signing again.
	unwritten kubesigner.Unwritten[issued]
}

// issued is a verdict to issue with its status.
type issued struct {
	v      verdict
	status *certificatesv1.PodCertificateRequestStatus
}

// unwrittenMaxAge is how long an issued status whose write failed is
// written again rather than signed afresh: kube-apiserver refuses a
// notBefore more than 5 minutes from its clock, and notBefore is backdated
// by policy.Backdate (2 minutes).
const unwrittenMaxAge = 2 * time.Minute

// verdict is how a request ends: denied or failed with a reason and a
// message, or issued.
type verdict struct {
	kind    string // a condition type
	reason  string
	message string
}

func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (res reconcile.Result, err error) {
	start := r.o.Clock.Now()
	outcome := kubesigner.OutcomeIgnored
	defer func() { r.m.Observe(Name, outcome, r.o.Clock.Since(start).Seconds()) }()

	pcr := &certificatesv1.PodCertificateRequest{}
	if err := r.client.Get(ctx, req.NamespacedName, pcr); err != nil {
		if apierrors.IsNotFound(err) {
			r.unwritten.Forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		outcome = kubesigner.OutcomeError
		return reconcile.Result{}, err
	}
	if pcr.Spec.SignerName != r.o.SignerName || finished(pcr) {
		r.unwritten.Forget(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	log := r.o.Log.With("namespace", pcr.Namespace, "name", pcr.Name)

	v, status, err := r.decide(ctx, pcr)
	if err != nil {
		// A transient problem (the engine, the apiserver): retry with
		// backoff, never a permanent condition.
		outcome = kubesigner.OutcomePending
		log.Warn("pod certificate request pending", "error", err.Error())
		return reconcile.Result{}, err
	}
	v.message = truncate(v.message, maxMessage)
	cond := metav1.Condition{
		Type: v.kind, Status: metav1.ConditionTrue, Reason: v.reason, Message: v.message,
		ObservedGeneration: pcr.Generation, LastTransitionTime: metav1.NewTime(r.o.Clock.Now()),
	}
	upd := pcr.DeepCopy()
	if status != nil {
		upd.Status = *status
	}
	upd.Status.Conditions = nil
	meta.SetStatusCondition(&upd.Status.Conditions, cond)
	// The update carries the resourceVersion read: if the request changed
	// meanwhile (another replica finished it), it conflicts and nothing
	// is overwritten.
	err = r.client.Status().Update(ctx, upd)
	if err != nil && status != nil && !apierrors.IsConflict(err) {
		// Kept for the retry, which writes it again instead of signing
		// again. A conflict means the request changed (another replica
		// settled it): the next reconcile decides anew.
		r.unwritten.Keep(req.NamespacedName, pcr.UID, issued{v: v, status: status})
	}
	if apierrors.IsInvalid(err) && status != nil {
		// kube-apiserver validates an issued certificate against the
		// request (its key, lifetime, notBefore near its own clock).
		// Signing again would be refused again, so the request fails
		// with the apiserver's reason; the kubelet makes a new one.
		v = verdict{kind: certificatesv1.PodCertificateRequestConditionTypeFailed, reason: ReasonCertificateRejected,
			message: truncate(fmt.Sprintf("kube-apiserver refused the issued certificate: %v", err), maxMessage)}
		upd = pcr.DeepCopy()
		upd.Status.Conditions = nil
		cond.Type, cond.Reason, cond.Message = v.kind, v.reason, v.message
		meta.SetStatusCondition(&upd.Status.Conditions, cond)
		err = r.client.Status().Update(ctx, upd)
	}
	if err != nil {
		outcome = kubesigner.OutcomeError
		return reconcile.Result{}, fmt.Errorf("writing the status of PodCertificateRequest %s/%s: %w", pcr.Namespace, pcr.Name, err)
	}
	r.unwritten.Forget(req.NamespacedName)
	switch v.kind {
	case certificatesv1.PodCertificateRequestConditionTypeIssued:
		outcome = kubesigner.OutcomeIssued
		log.Info("pod certificate issued", "pod", pcr.Spec.PodName, "notAfter", status.NotAfter.UTC().Format(time.RFC3339))
	case certificatesv1.PodCertificateRequestConditionTypeDenied:
		outcome = kubesigner.OutcomeDenied
		log.Info("pod certificate request denied", "reason", v.reason, "message", v.message)
	default:
		outcome = kubesigner.OutcomeFailed
		log.Warn("pod certificate request failed", "reason", v.reason, "message", v.message)
	}
	return reconcile.Result{}, nil
}

// maxMessage bounds a condition message that quotes an apiserver error
// (the API allows 32768 bytes; an error can quote the whole chain).
const maxMessage = 2048

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// finished reports whether the request already has its terminal condition
// (the API allows exactly one of Issued, Denied, Failed, and freezes the
// status once one is set).
func finished(pcr *certificatesv1.PodCertificateRequest) bool {
	for _, t := range []string{
		certificatesv1.PodCertificateRequestConditionTypeIssued,
		certificatesv1.PodCertificateRequestConditionTypeDenied,
		certificatesv1.PodCertificateRequestConditionTypeFailed,
	} {
		if meta.IsStatusConditionTrue(pcr.Status.Conditions, t) {
			return true
		}
	}
	return pcr.Status.CertificateChain != ""
}

func denied(reason, format string, args ...any) verdict {
	return verdict{kind: certificatesv1.PodCertificateRequestConditionTypeDenied, reason: reason, message: fmt.Sprintf(format, args...)}
}

// decide checks the request against the live pod and ServiceAccount, then
// signs. It returns the verdict and, when issued, the status to write; an
// error is transient (retry).
func (r *reconciler) decide(ctx context.Context, pcr *certificatesv1.PodCertificateRequest) (verdict, *certificatesv1.PodCertificateRequestStatus, error) {
	s := pcr.Spec
	if v, bad := r.checkUserAnnotations(s.UnverifiedUserAnnotations); bad {
		return v, nil, nil
	}
	if v, bad, err := r.checkPod(ctx, pcr); err != nil || bad {
		return v, nil, err
	}
	if k, ok := r.unwritten.Get(client.ObjectKeyFromObject(pcr), pcr.UID); ok {
		// Signed before, and the pod still qualifies: write that.
		return k.v, k.status, nil
	}
	id, err := identity.ForServiceAccount(r.td, pcr.Namespace, s.ServiceAccountName)
	if err != nil {
		return denied(ReasonPolicyDenied, "no SPIFFE identity for the ServiceAccount: %v", err), nil, nil
	}
	// The apiserver verified the stub CSR at admission; meshca verifies it
	// again (ParseCSR bounds its size, checks the key type, then the
	// signature): the proof of possession is what lets it sign the key.
	csr, err := policy.ParseCSR(s.StubPKCS10Request)
	if err != nil {
		switch caerr.ReasonOf(err) {
		case policy.ReasonKeyType, policy.ReasonKeyTooSmall:
			return denied(ReasonUnsupportedKeyType, "%v; meshca signs ECDSAP256, ECDSAP384, RSA3072, RSA4096 and ED25519 keys: use keyType %s", err, suggestedKeyType), nil, nil
		}
		return denied(ReasonInvalidRequest, "spec.stubPKCS10Request: %v", err), nil, nil
	}
	maxLife := time.Duration(86400) * time.Second
	if s.MaxExpirationSeconds != nil {
		maxLife = time.Duration(*s.MaxExpirationSeconds) * time.Second
	}
	if r.o.MaxDuration > 0 && r.o.MaxDuration < maxLife {
		maxLife = r.o.MaxDuration
	}
	usages := []policy.Usage{policy.UsageDigitalSignature, policy.UsageServerAuth, policy.UsageClientAuth}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usages = append(usages, policy.UsageKeyEncipherment)
	}
	res, err := r.o.Engine.Sign(ctx, authority.Request{
		PublicKey: csr.PublicKey,
		Identity:  id.ID.URL(),
		Requester: "podcertificate:" + pcr.Namespace + "/" + s.PodName,
		Profile:   r.o.Profile,
		Options: []policy.SignOption{
			policy.WithUsages(usages...),
			// The engine backdates notBefore by policy.Backdate, so the
			// lifetime from now is the certificate's less that: notAfter −
			// notBefore then lies in [1h, maxLife], the API's bounds.
			policy.WithDuration(policy.Duration{Max: maxLife - policy.Backdate, Min: MinLifetime - policy.Backdate}),
		},
	})
	if err != nil {
		if kubesigner.Transient(err) {
			return verdict{}, nil, err
		}
		switch caerr.CodeOf(err) {
		case caerr.InvalidArgument, caerr.PermissionDenied, caerr.Unauthenticated:
			return denied(ReasonPolicyDenied, "meshca's issuance policy refused %s (%s): %v", id.ID, caerr.ReasonOf(err), err), nil, nil
		}
		return verdict{kind: certificatesv1.PodCertificateRequestConditionTypeFailed, reason: ReasonSigningFailed,
			message: fmt.Sprintf("signing failed (%s): %v", caerr.ReasonOf(err), err)}, nil, nil
	}
	leaf, err := res.Leaf()
	if err != nil {
		return verdict{}, nil, fmt.Errorf("parsing the issued certificate: %w", err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if life < MinLifetime || life > maxLife {
		// Only an issuer that was not backdated (it began less than
		// policy.Backdate ago) gets here; it is CA state, so retry.
		return verdict{}, nil, fmt.Errorf("the certificate for %s would live %s, outside [%s, %s]; retrying", id.ID, life, MinLifetime, maxLife)
	}
	notBefore, notAfter := metav1.NewTime(leaf.NotBefore), metav1.NewTime(leaf.NotAfter)
	// Refresh at half the lifetime (the kubelet's hint; the API requires
	// it at least 10 minutes after notBefore and before notAfter, which
	// half of at least an hour is).
	refresh := metav1.NewTime(leaf.NotBefore.Add(life / 2).Truncate(time.Second))
	msg := fmt.Sprintf("issued %s, valid until %s", id.ID, leaf.NotAfter.UTC().Format(time.RFC3339))
	for _, a := range res.Adjustments {
		msg += "; " + a.Message
	}
	return verdict{kind: certificatesv1.PodCertificateRequestConditionTypeIssued, reason: ReasonIssued, message: msg},
		&certificatesv1.PodCertificateRequestStatus{
			CertificateChain: string(kubesigner.ChainPEM(res, false)),
			NotBefore:        &notBefore,
			NotAfter:         &notAfter,
			BeginRefreshAt:   &refresh,
		}, nil
}

// maxListedKeys and maxListedBytes bound how many unrecognised annotation
// keys a message names; the rest are counted ("and 3 more").
const (
	maxListedKeys  = 10
	maxListedBytes = 1024
)

// checkUserAnnotations denies keys meshca does not recognise, as the API
// asks signers to.
func (r *reconciler) checkUserAnnotations(a map[string]string) (verdict, bool) {
	var unknown []string
	for k := range a {
		if !slices.Contains(r.o.UserAnnotations, k) {
			unknown = append(unknown, identity.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return verdict{}, false
	}
	sort.Strings(unknown)
	listed, size := 0, 0
	for listed < len(unknown) && listed < maxListedKeys && size+len(unknown[listed]) <= maxListedBytes {
		size += len(unknown[listed]) + 2
		listed++
	}
	if listed == 0 {
		listed = 1 // one key, already cut by identity.Quote
	}
	if n := len(unknown); n > listed {
		unknown = append(unknown[:listed], fmt.Sprintf("and %d more", n-listed))
	}
	known := "meshca recognises none"
	if len(r.o.UserAnnotations) > 0 {
		known = "meshca recognises " + strings.Join(r.o.UserAnnotations, ", ")
	}
	return denied(ReasonInvalidUserAnnotations, "spec.unverifiedUserAnnotations has keys meshca does not recognise: %s (%s; signers.podCertificates.userAnnotations)",
		strings.Join(unknown, ", "), known), true
}

// checkPod reads the pod, its node and the ServiceAccount live: a request
// whose pod is gone, was replaced (another UID), runs as another
// ServiceAccount or on another node, has ended or is being deleted, whose
// node has another UID, or whose ServiceAccount was recreated, is denied. An error reading them is transient.
func (r *reconciler) checkPod(ctx context.Context, pcr *certificatesv1.PodCertificateRequest) (verdict, bool, error) {
	s := pcr.Spec
	pod := &corev1.Pod{}
	err := r.live.Get(ctx, types.NamespacedName{Namespace: pcr.Namespace, Name: s.PodName}, pod)
	if apierrors.IsNotFound(err) {
		return denied(ReasonPodNotFound, "pod %s/%s does not exist: a stale request gets no certificate", pcr.Namespace, s.PodName), true, nil
	}
	if err != nil {
		return verdict{}, false, fmt.Errorf("reading pod %s/%s: %w", pcr.Namespace, s.PodName, err)
	}
	switch {
	case pod.UID != s.PodUID:
		return denied(ReasonPodMismatch, "pod %s/%s has UID %s, not the request's %s: a stale request gets no certificate", pcr.Namespace, s.PodName, pod.UID, s.PodUID), true, nil
	case pod.Spec.ServiceAccountName != s.ServiceAccountName:
		return denied(ReasonPodMismatch, "pod %s/%s runs as ServiceAccount %s, not the request's %s", pcr.Namespace, s.PodName, pod.Spec.ServiceAccountName, s.ServiceAccountName), true, nil
	case pod.Spec.NodeName != string(s.NodeName):
		return denied(ReasonPodMismatch, "pod %s/%s is on node %s, not the request's %s", pcr.Namespace, s.PodName, pod.Spec.NodeName, s.NodeName), true, nil
	case pod.DeletionTimestamp != nil:
		return denied(ReasonPodNotRunning, "pod %s/%s is being deleted: it gets no new certificate", pcr.Namespace, s.PodName), true, nil
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return denied(ReasonPodNotRunning, "pod %s/%s has ended (phase %s): it gets no new certificate", pcr.Namespace, s.PodName, pod.Status.Phase), true, nil
	}
	// The node, live: the request's nodeUID must be the node's (a node
	// deleted and re-registered under the same name has a new UID).
	node := &corev1.Node{}
	err = r.live.Get(ctx, types.NamespacedName{Name: string(s.NodeName)}, node)
	if apierrors.IsNotFound(err) {
		return denied(ReasonNodeMismatch, "node %s does not exist: a stale request gets no certificate", s.NodeName), true, nil
	}
	if err != nil {
		return verdict{}, false, fmt.Errorf("reading node %s: %w", s.NodeName, err)
	}
	if node.UID != s.NodeUID {
		return denied(ReasonNodeMismatch, "node %s has UID %s, not the request's %s: a stale request gets no certificate", s.NodeName, node.UID, s.NodeUID), true, nil
	}
	sa := &corev1.ServiceAccount{}
	err = r.live.Get(ctx, types.NamespacedName{Namespace: pcr.Namespace, Name: s.ServiceAccountName}, sa)
	if apierrors.IsNotFound(err) {
		return denied(ReasonServiceAccountMismatch, "ServiceAccount %s/%s does not exist", pcr.Namespace, s.ServiceAccountName), true, nil
	}
	if err != nil {
		return verdict{}, false, fmt.Errorf("reading ServiceAccount %s/%s: %w", pcr.Namespace, s.ServiceAccountName, err)
	}
	if sa.UID != s.ServiceAccountUID {
		return denied(ReasonServiceAccountMismatch, "ServiceAccount %s/%s has UID %s, not the request's %s: it was recreated", pcr.Namespace, s.ServiceAccountName, sa.UID, s.ServiceAccountUID), true, nil
	}
	return verdict{}, false, nil
}
