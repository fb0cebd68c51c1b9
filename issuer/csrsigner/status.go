package csrsigner

import (
	"context"
	"errors"
	"fmt"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/issuer/kubesigner"
)

// state is where a request stands for a signer.
type state int

const (
	// signable: Approved, not Denied or Failed, no certificate yet.
	signable state = iota
	unapproved
	denied
	failed
	issued
)

// stateOf reads csr's status. The apiserver does not enforce approval
// ("Certificates and Certificate Signing Requests": the signer must wait
// for an Approved condition), so meshca does; a Denied or Failed condition
// of any status, or a certificate, ends the request for good.
func stateOf(csr *certv1.CertificateSigningRequest) state {
	if len(csr.Status.Certificate) > 0 {
		return issued
	}
	approved := false
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certv1.CertificateDenied:
			return denied
		case certv1.CertificateFailed:
			return failed
		case certv1.CertificateApproved:
			approved = approved || c.Status == corev1.ConditionTrue
		}
	}
	if !approved {
		return unapproved
	}
	return signable
}

// errSettled: the request was finished (or denied, or replaced) by someone
// else while meshca was signing it; nothing is written.
var errSettled = errors.New("the request is no longer waiting for a certificate")

// conflictRetries bounds how often a status write is retried on a
// resourceVersion conflict (e.g. an approval written meanwhile).
const conflictRetries = 3

// write applies set to csr's status through the /status subresource
// (certificatesigningrequests/status: status.certificate and conditions
// other than Approved/Denied). On a conflict it re-reads the request from
// the apiserver and writes only if it still waits for meshca.
func (s *Signer) write(ctx context.Context, csr *certv1.CertificateSigningRequest, set func(*certv1.CertificateSigningRequest)) error {
	obj := csr.DeepCopy()
	set(obj)
	err := s.c.Status().Update(ctx, obj)
	for i := 0; apierrors.IsConflict(err) && i < conflictRetries; i++ {
		fresh := &certv1.CertificateSigningRequest{}
		if err := s.live.Get(ctx, client.ObjectKey{Name: csr.Name}, fresh); err != nil {
			if apierrors.IsNotFound(err) {
				return errSettled
			}
			return err
		}
		if fresh.UID != csr.UID || stateOf(fresh) != signable {
			return errSettled
		}
		set(fresh)
		err = s.c.Status().Update(ctx, fresh)
	}
	if err == nil {
		s.remember(csr.Name, csr.UID)
	}
	return err
}

// signedBefore returns the chain signed for name (request uid) whose write failed.
func (s *Signer) signedBefore(name string, uid types.UID) (signedChain, bool) {
	return s.unwritten.Get(types.NamespacedName{Name: name}, uid)
}

// fail adds the Failed condition (a permanent refusal).
func (s *Signer) fail(ctx context.Context, csr *certv1.CertificateSigningRequest, reason, msg string) (kubesigner.Outcome, error) {
	msg = bound(msg)
	now := metav1.NewTime(s.o.Clock.Now())
	err := s.write(ctx, csr, func(r *certv1.CertificateSigningRequest) {
		r.Status.Conditions = append(r.Status.Conditions, certv1.CertificateSigningRequestCondition{
			Type: certv1.CertificateFailed, Status: corev1.ConditionTrue,
			Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now,
		})
	})
	switch {
	case errors.Is(err, errSettled):
		return kubesigner.OutcomeIgnored, nil
	case err != nil:
		return kubesigner.OutcomeError, fmt.Errorf("write the Failed condition of %s: %w", csr.Name, err)
	}
	s.o.Log.Info("certificate signing request failed", "csr", csr.Name, "reason", reason)
	return kubesigner.OutcomeFailed, nil
}

// event records an Event on csr (events.k8s.io/v1, in namespace default
// for this cluster-scoped object).
func (s *Signer) event(csr *certv1.CertificateSigningRequest, reason, note string) {
	if s.events == nil {
		return
	}
	s.events.Eventf(csr, nil, corev1.EventTypeNormal, reason, "Sign", "%s", bound(note))
}

func bound(s string) string {
	if len(s) > maxMessage {
		return strings.ToValidUTF8(s[:maxMessage], "") + "…"
	}
	return s
}

func (s *Signer) remember(name string, uid types.UID) {
	s.mu.Lock()
	s.written[name] = uid
	s.mu.Unlock()
	s.unwritten.Forget(types.NamespacedName{Name: name})
}

func (s *Signer) wrote(name string, uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[name] == uid
}

func (s *Signer) forget(name string) {
	s.mu.Lock()
	delete(s.written, name)
	s.mu.Unlock()
	s.unwritten.Forget(types.NamespacedName{Name: name})
}
