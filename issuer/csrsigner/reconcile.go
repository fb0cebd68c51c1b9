package csrsigner

import (
	"context"
	"errors"
	"fmt"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// Reasons of the Failed condition meshca adds to a request it will not sign.
const (
	// ReasonRequesterNotAllowed: spec.username is not in signers.csr.allowedRequesters.
	ReasonRequesterNotAllowed = "RequesterNotAllowed"
	// ReasonInvalidRequest: spec.request is not a CSR meshca can read, or
	// does not carry exactly one URI SAN.
	ReasonInvalidRequest = "InvalidRequest"
	// ReasonForeignTrustDomain: the CSR's SPIFFE ID is of another trust domain.
	ReasonForeignTrustDomain = "ForeignTrustDomain"
	// ReasonInvalidIdentity: the CSR's URI SAN is not a workload SPIFFE ID.
	ReasonInvalidIdentity = "InvalidIdentity"
	// ReasonUsageNotAllowed: spec.usages asks for a usage a workload
	// certificate cannot have (e.g. cert sign).
	ReasonUsageNotAllowed = "UsageNotAllowed"
	// ReasonSigningRefused: the issuance policy refused the request.
	ReasonSigningRefused = "SigningRefused"
)

// Reasons of the Events meshca writes on a request it signed differently
// from what was asked.
const (
	// EventKeyEnciphermentDropped: keyEncipherment was asked for an ECDSA
	// or Ed25519 key, which cannot encipher (RFC 5480 §3, RFC 8410 §5).
	EventKeyEnciphermentDropped = "KeyEnciphermentDropped"
	// EventDurationClamped: expirationSeconds exceeded the maximum.
	EventDurationClamped = "DurationClamped"
	// EventAdjusted: any other adjustment.
	EventAdjusted = "Adjusted"
)

// maxMessage bounds a condition or Event message.
const maxMessage = 1024

// Reconcile implements reconcile.Reconciler.
func (s *Signer) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := s.o.Clock.Now()
	out, err := s.reconcile(ctx, req.Name)
	s.metrics.Observe(Name, out, s.o.Clock.Since(start).Seconds())
	return reconcile.Result{}, err
}

func (s *Signer) reconcile(ctx context.Context, name string) (kubesigner.Outcome, error) {
	var csr certv1.CertificateSigningRequest
	if err := s.c.Get(ctx, client.ObjectKey{Name: name}, &csr); err != nil {
		if apierrors.IsNotFound(err) {
			s.forget(name)
			return kubesigner.OutcomeIgnored, nil
		}
		return kubesigner.OutcomeError, err
	}
	if !s.signers[csr.Spec.SignerName] {
		return kubesigner.OutcomeIgnored, nil
	}
	switch st := stateOf(&csr); st {
	case issued, failed:
		s.forget(name)
		return kubesigner.OutcomeIgnored, nil
	case denied:
		s.forget(name)
		return kubesigner.OutcomeDenied, nil
	case unapproved:
		return kubesigner.OutcomeIgnored, nil
	}
	if s.wrote(name, csr.UID) {
		// This replica finished it; the cache has not caught up yet.
		return kubesigner.OutcomeIgnored, nil
	}

	// Authorise before parsing: only the allowed requesters reach the CSR.
	if !s.allowed(csr.Spec.Username) {
		return s.fail(ctx, &csr, ReasonRequesterNotAllowed, fmt.Sprintf(
			"requester %s is not allowed by meshca's signers.csr.allowedRequesters; only the listed users (istiod's ServiceAccount) may get mesh identities through signer %s",
			identity.Quote(csr.Spec.Username), csr.Spec.SignerName))
	}
	if c, ok := s.signedBefore(name, csr.UID); ok {
		// Signed already; only the status write failed.
		return s.writeChain(ctx, &csr, c)
	}
	req, clamp, reason, msg := s.request(&csr)
	if reason != "" {
		return s.fail(ctx, &csr, reason, msg)
	}
	res, err := s.o.Engine.Sign(ctx, req)
	if err != nil {
		if kubesigner.Transient(err) {
			// Never a Failed condition: retried with backoff until the
			// engine is back (istiod waits 60 s).
			return kubesigner.OutcomePending, fmt.Errorf("signing %s deferred: %w", name, err)
		}
		reason := ReasonSigningRefused
		if caerr.ReasonOf(err) == policy.ReasonUsageNotAllowed {
			reason = ReasonUsageNotAllowed
		}
		return s.fail(ctx, &csr, reason, "meshca's issuance policy refused the request: "+err.Error())
	}
	// Leaf first, then the intermediates, without the root: "If more than
	// one PEM block is present ... the first block is the issued
	// certificate, and subsequent blocks should be treated as intermediate
	// certificates and presented in TLS handshakes" (certificates.k8s.io/v1
	// CertificateSigningRequestStatus.certificate). istiod's RA
	// (security/pkg/pki/ra KubernetesRA.SignWithCertChain) appends its
	// caCertFile, the mesh root, itself; with the root in the chain too,
	// its answer would carry the root twice.
	c := signedChain{uid: csr.UID, chain: kubesigner.ChainPEM(res, false)}
	if clamp != "" {
		c.notes = append(c.notes, note{EventDurationClamped, clamp})
	}
	for _, a := range res.Adjustments {
		c.notes = append(c.notes, note{eventReason(a.Reason), a.Message})
	}
	return s.writeChain(ctx, &csr, c)
}

// request builds the engine's request from csr, or says why it is refused.
// The identity is the CSR's SPIFFE URI, which istiod validated against the
// workload's credential before it created the request.
func (s *Signer) request(csr *certv1.CertificateSigningRequest) (req authority.Request, clamp, reason, msg string) {
	parsed, err := policy.ParseCSR(csr.Spec.Request) // bounded by policy.MaxCSRSize
	if err != nil {
		return req, "", ReasonInvalidRequest, "spec.request: " + err.Error()
	}
	if len(parsed.URIs) != 1 {
		return req, "", ReasonInvalidRequest, fmt.Sprintf("spec.request: the CSR must carry exactly one URI SAN, the workload's SPIFFE ID; it has %d", len(parsed.URIs))
	}
	id, err := identity.WorkloadURL(parsed.URIs[0], s.o.TrustDomain)
	if err != nil {
		if fe := (*identity.ForeignError)(nil); errors.As(err, &fe) {
			return req, "", ReasonForeignTrustDomain, fmt.Sprintf("the CSR's %v: meshca signs only the mesh's trust domain %s", err, s.o.TrustDomain)
		}
		return req, "", ReasonInvalidIdentity, "the CSR's URI SAN: " + err.Error()
	}
	usages := make([]policy.Usage, len(csr.Spec.Usages))
	for i, u := range csr.Spec.Usages {
		usages[i] = policy.Usage(u)
	}
	d := policy.Duration{Max: s.o.MaxDuration}
	if e := csr.Spec.ExpirationSeconds; e != nil {
		d.Requested = time.Duration(*e) * time.Second
		if s.o.MaxDuration > 0 && d.Requested > s.o.MaxDuration {
			clamp = fmt.Sprintf("expirationSeconds %d exceeds meshca's signers.csr.maxDuration; the certificate lasts at most %s", *e, s.o.MaxDuration)
		}
	}
	return authority.Request{
		CSR:       csr.Spec.Request,
		Identity:  id.URL(),
		Requester: "csr:" + csr.Spec.Username,
		Profile:   s.o.Profile,
		Options:   []policy.SignOption{policy.WithUsages(usages...), policy.WithDuration(d)},
	}, clamp, "", ""
}

func eventReason(r string) string {
	switch r {
	case policy.ReasonKeyEnciphermentDropped:
		return EventKeyEnciphermentDropped
	case policy.ReasonDurationClamped, policy.ReasonDurationClampedToIssuer:
		return EventDurationClamped
	}
	return EventAdjusted
}

// writeChain writes c to csr's status.certificate and its Events; after an
// API error it keeps c for the retry.
func (s *Signer) writeChain(ctx context.Context, csr *certv1.CertificateSigningRequest, c signedChain) (kubesigner.Outcome, error) {
	err := s.write(ctx, csr, func(r *certv1.CertificateSigningRequest) { r.Status.Certificate = c.chain })
	switch {
	case errors.Is(err, errSettled):
		s.forget(csr.Name)
		return kubesigner.OutcomeIgnored, nil
	case err != nil:
		s.unwritten.Keep(types.NamespacedName{Name: csr.Name}, csr.UID, c)
		return kubesigner.OutcomeError, fmt.Errorf("write the certificate of %s: %w", csr.Name, err)
	}
	for _, n := range c.notes {
		s.event(csr, n.reason, n.text)
	}
	return kubesigner.OutcomeIssued, nil
}
