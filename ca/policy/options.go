package policy

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/identity"
)

// Reasons of the per-request options' refusals and adjustments.
const (
	ReasonUsageNotAllowed      = "usage_not_allowed"
	ReasonDurationInvalid      = "duration_invalid"
	ReasonTTLTooShort          = "ttl_too_short"
	ReasonIssuerExpiresTooSoon = "issuer_expires_too_soon"
	ReasonCANotAllowed         = "ca_not_allowed"
	ReasonRequestRefused       = "request_refused"
	ReasonNoPublicKey          = "request_public_key"

	// ReasonKeyEnciphermentDropped: keyEncipherment was asked for a key
	// that cannot encipher (ECDSA: RFC 5480 §3; Ed25519: RFC 8410 §5).
	ReasonKeyEnciphermentDropped = "key_encipherment_dropped"
	// ReasonDurationClamped: the lifetime asked for exceeded the policy's maximum.
	ReasonDurationClamped = "duration_clamped"
	// ReasonDurationClampedToIssuer: the leaf would outlive the signing
	// intermediate, so it ends with it (RFC 5280 §6.1.3 checks validity
	// along the whole path).
	ReasonDurationClampedToIssuer = "duration_clamped_to_issuer"
)

// SignOption is what a front door adds to one request (step-ca's
// provisioner.SignOption): a validator of its own, or a request the engine
// interprets — usages, a lifetime, a CA certificate. A front door cannot
// write the certificate itself; the engine's modifiers do, so that the
// engine stays the one place that decides what is issued.
type SignOption interface {
	apply(*plan)
}

// plan is what a request's options ask for, collected before the pipeline runs.
type plan struct {
	usages     []Usage // nil: the default leaf usages
	hasUsages  bool
	duration   Duration
	hasDur     bool
	ca         bool
	caAllowed  bool
	validators []Validator

	spki        []byte // the SubjectPublicKeyInfo of Request.PublicKey
	adjustments []Adjustment
}

// Adjustment is something the engine granted differently from what was
// asked, for the front door to tell the requester (e.g. a Kubernetes Event).
type Adjustment struct {
	Reason  string
	Message string
}

// Usage is a requested key usage, in the vocabulary of Kubernetes'
// certificates.k8s.io KeyUsage and cert-manager's spec.usages.
type Usage string

// The usages a workload leaf may have.
const (
	UsageDigitalSignature Usage = "digital signature"
	UsageKeyEncipherment  Usage = "key encipherment"
	UsageServerAuth       Usage = "server auth"
	UsageClientAuth       Usage = "client auth"
)

// maxUsages bounds the usages of one request (both vocabularies have fewer than 30 words).
const maxUsages = 32

type usagesOption []Usage

func (u usagesOption) apply(p *plan) { p.usages, p.hasUsages = u, true }

// WithUsages asks for exactly these usages instead of the default
// (digitalSignature, keyEncipherment for RSA, serverAuth, clientAuth).
// Every leaf has digitalSignature (X509-SVID §4.3). keyEncipherment is
// granted only to RSA keys; for ECDSA and Ed25519 keys it is dropped and
// reported (Adjustment ReasonKeyEnciphermentDropped), not refused. The
// extended key usage holds the requested of serverAuth and clientAuth, and
// is absent when neither is asked for. Any other usage is refused.
func WithUsages(us ...Usage) SignOption { return usagesOption(us) }

// Duration is a requested lifetime.
type Duration struct {
	// Requested is the lifetime asked for (Kubernetes' expirationSeconds,
	// cert-manager's spec.duration); zero means the policy's default.
	Requested time.Duration
	// Max is the requester's own cap (a PodCertificateRequest's
	// maxExpirationSeconds, an issuer's maximum); zero means none.
	Max time.Duration
	// Min is the shortest lifetime the requester accepts; zero means none.
	Min time.Duration
}

type durationOption Duration

func (d durationOption) apply(p *plan) { p.duration, p.hasDur = Duration(d), true }

// WithDuration asks for a lifetime. Unlike Request.TTL (refused above the
// maximum, as Istio's API expects), it is clamped: to Max, then to the
// policy's maximum (reported, ReasonDurationClamped), then to the signing
// intermediate's notAfter (reported, ReasonDurationClampedToIssuer). A
// lifetime that ends below Min is refused.
func WithDuration(d Duration) SignOption { return durationOption(d) }

type caOption bool

func (c caOption) apply(p *plan) { p.ca, p.caAllowed = true, bool(c) }

// RequestCA says the requester asks for a CA certificate (cert-manager's
// spec.isCA); issuerAllows says whether the requester's issuer permits CA
// issuance. Without it the request is refused (PermissionDenied,
// ReasonCANotAllowed); with it the policy decides.
func RequestCA(issuerAllows bool) SignOption { return caOption(issuerAllows) }

type validatorOption struct{ v Validator }

func (o validatorOption) apply(p *plan) { p.validators = append(p.validators, o.v) }

// WithValidator adds a front door's own check. It runs after the policy's
// validators, and can only refuse; an error that is not a *caerr.Error is
// refused as InvalidArgument (ReasonRequestRefused).
func WithValidator(v Validator) SignOption { return validatorOption{v} }

// setPlan collects req's options into req.plan; without options it stays
// nil (the Istio path allocates nothing for it).
func (req *Request) setPlan() {
	req.plan = nil
	if len(req.Extra) == 0 && req.PublicKey == nil {
		return
	}
	p := &plan{}
	for _, o := range req.Extra {
		if o != nil {
			o.apply(p)
		}
	}
	req.plan = p
}

// hasDuration reports whether req has a WithDuration option.
func (req *Request) hasDuration() bool { return req.plan != nil && req.plan.hasDur }

// checkPlan refuses options that can never be granted.
func (e *Engine) checkPlan(req *Request, p *plan, issuer *x509.Certificate) error {
	if p == nil {
		return nil
	}
	if p.ca {
		if !p.caAllowed {
			return caerr.New(caerr.PermissionDenied, ReasonCANotAllowed, "the requester's issuer does not allow CA certificates (isCA)")
		}
		// The engine issues leaves only. Under an intermediate with
		// pathLenConstraint 0 (what meshca mints) a CA would not even
		// verify (RFC 5280 §4.2.1.9).
		if issuer.MaxPathLen == 0 {
			return caerr.New(caerr.PermissionDenied, ReasonCARequest, "meshca issues no CA certificates: its signing intermediate has pathLenConstraint 0, so a CA under it would not verify (RFC 5280 §4.2.1.9)")
		}
		return caerr.New(caerr.PermissionDenied, ReasonCARequest, "meshca issues no CA certificates: its issuance policy signs workload leaves only")
	}
	if p.hasUsages {
		if len(p.usages) > maxUsages {
			return invalid(ReasonUsageNotAllowed, "%d usages requested; the limit is %d", len(p.usages), maxUsages)
		}
		for _, u := range p.usages {
			switch u {
			case UsageDigitalSignature, UsageKeyEncipherment, UsageServerAuth, UsageClientAuth:
			default:
				return invalid(ReasonUsageNotAllowed, "usage %s is not allowed for a workload certificate; allowed are %q, %q, %q and %q",
					identity.Quote(string(u)), UsageDigitalSignature, UsageKeyEncipherment, UsageServerAuth, UsageClientAuth)
			}
		}
	}
	if p.hasDur {
		d := p.duration
		switch {
		case req.TTL != 0:
			return invalid(ReasonDurationInvalid, "the request sets both a TTL and a duration")
		case d.Requested < 0 || d.Max < 0 || d.Min < 0:
			return invalid(ReasonDurationInvalid, "a negative duration was requested")
		case d.Requested > 0 && d.Requested < d.Min:
			return invalid(ReasonDurationInvalid, "requested duration %s is below the minimum %s", d.Requested, d.Min)
		case d.Max > 0 && d.Max < d.Min:
			return invalid(ReasonDurationInvalid, "the maximum duration %s is below the minimum %s", d.Max, d.Min)
		}
	}
	return nil
}

// lifetime is the TTL req gets under its Duration option d: the request
// (else the policy's default, at least d.Min), at most d.Max, clamped to
// the policy's maximum; refused when that leaves less than d.Min.
func (e *Engine) lifetime(req *Request, d Duration) (time.Duration, error) {
	ttl := d.Requested
	if ttl == 0 {
		ttl = max(e.opts.DefaultTTL, d.Min)
	}
	if d.Max > 0 && ttl > d.Max {
		ttl = d.Max
	}
	if m := e.maxTTL(req); m > 0 && ttl > m {
		if d.Requested > m || (d.Requested == 0 && d.Max > m) {
			req.adjust(ReasonDurationClamped, fmt.Sprintf("the lifetime was limited to the policy's maximum of %s", m))
		}
		ttl = m
	}
	if ttl < d.Min {
		return 0, invalid(ReasonTTLTooShort, "the policy's maximum lifetime %s for %s is below the requested minimum %s", ttl, req.Identity, d.Min)
	}
	return ttl, nil
}

// runValidators runs the front door's validators.
func runValidators(req *Request) error {
	if req.plan == nil {
		return nil
	}
	for _, v := range req.plan.validators {
		if err := v.Validate(req); err != nil {
			if ce := (*caerr.Error)(nil); errors.As(err, &ce) {
				return err
			}
			return caerr.Wrap(err, caerr.InvalidArgument, ReasonRequestRefused, "request refused")
		}
	}
	return nil
}

// requestedUsages sets t's usages from an explicit list (see WithUsages).
func requestedUsages(t *x509.Certificate, req *Request, us []Usage) {
	t.KeyUsage = x509.KeyUsageDigitalSignature
	var server, client bool
	for _, u := range us {
		switch u {
		case UsageKeyEncipherment:
			if _, ok := req.publicKey().(*rsa.PublicKey); ok {
				t.KeyUsage |= x509.KeyUsageKeyEncipherment
			} else if t.KeyUsage&x509.KeyUsageKeyEncipherment == 0 && !hasAdjustment(req, ReasonKeyEnciphermentDropped) {
				req.adjust(ReasonKeyEnciphermentDropped, fmt.Sprintf("keyEncipherment was not granted: it is not valid for a %s key (RFC 5480 §3, RFC 8410 §5)", keyAlgorithm(req.publicKey())))
			}
		case UsageServerAuth:
			server = true
		case UsageClientAuth:
			client = true
		}
	}
	t.ExtKeyUsage = nil
	if server {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if client {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
}

func hasAdjustment(req *Request, reason string) bool {
	for _, a := range req.Adjustments() {
		if a.Reason == reason {
			return true
		}
	}
	return false
}
