package policy

import (
	"crypto"
	"crypto/x509"
	"net/url"
	"time"
)

// Request is what the policy sees: the authenticated identity (never taken
// from the CSR or the key), the subject's public key — in a parsed and
// signature-checked CSR, or as a key whose possession the front door has
// proven — the requested TTL and the front door's per-request options.
type Request struct {
	Identity *url.URL
	// CSR is the parsed, signature-checked request; set it or PublicKey.
	CSR *x509.CertificateRequest
	// PublicKey is the subject's key when the front door has proven
	// possession itself (a PodCertificateRequest's proof, checked by the
	// apiserver); set it or CSR. Nothing else is taken from the requester.
	PublicKey crypto.PublicKey
	// TTL is the requested lifetime; zero or negative means the default.
	// Above the maximum it is refused; WithDuration asks for a clamped one.
	TTL time.Duration
	// Extra are the front door's options for this request (step-ca's
	// extraOpts): WithUsages, WithDuration, RequestCA, WithValidator.
	Extra []SignOption

	// Rule is the named exception that applies, set by the Engine.
	Rule *Rule

	// plan is the state of a request with Extra or PublicKey; nil on the
	// Istio path, which so allocates nothing for it.
	plan *plan
}

// Adjustments, set by the Engine, say what was granted differently from
// what was asked (e.g. keyEncipherment dropped for an ECDSA key).
func (r *Request) Adjustments() []Adjustment {
	if r.plan == nil {
		return nil
	}
	return r.plan.adjustments
}

// adjust records an adjustment; only requests with options have any.
func (r *Request) adjust(reason, msg string) {
	if r.plan == nil {
		r.plan = &plan{}
	}
	r.plan.adjustments = append(r.plan.adjustments, Adjustment{Reason: reason, Message: msg})
}

// publicKey is the subject's key, from the CSR or the front door.
func (r *Request) publicKey() crypto.PublicKey {
	if r.CSR != nil {
		return r.CSR.PublicKey
	}
	return r.PublicKey
}

// subjectPublicKeyInfo is the DER SubjectPublicKeyInfo of the subject's key.
func (r *Request) subjectPublicKeyInfo() []byte {
	switch {
	case r.CSR != nil:
		return r.CSR.RawSubjectPublicKeyInfo
	case r.plan != nil:
		return r.plan.spki
	}
	return nil
}

// Options configure an Engine.
type Options struct {
	TrustDomain           string
	DefaultTTL            time.Duration
	MaxTTL                time.Duration
	CRLDistributionPoints []string
	Rules                 []*Rule
	// SkipCSRIdentity is for front doors whose CSR carries no SAN at all
	// (PodCertificateRequest stubs); the identity still comes from the caller.
	SkipCSRIdentity bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Engine runs the validators and modifiers for a request.
type Engine struct {
	opts Options
}

// New returns a policy Engine.
func New(opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Engine{opts: opts}
}

// Options returns a copy of the engine's options.
func (e *Engine) Options() Options { return e.opts }

// WithSkipCSRIdentity returns a copy of the engine that does not require the
// CSR to carry the identity.
func (e *Engine) WithSkipCSRIdentity() *Engine {
	o := e.opts
	o.SkipCSRIdentity = true
	return New(o)
}

// ruleFor returns the first named rule that matches id, or nil.
func (e *Engine) ruleFor(id *url.URL) *Rule {
	if id == nil {
		return nil
	}
	for _, r := range e.opts.Rules {
		if r.Matches(id) {
			return r
		}
	}
	return nil
}

// maxTTL is the longest lifetime req may have: the rule's, else the global one.
func (e *Engine) maxTTL(req *Request) time.Duration {
	if req.Rule != nil && req.Rule.MaxCertTTL > 0 {
		return req.Rule.MaxCertTTL
	}
	return e.opts.MaxTTL
}

func (e *Engine) validators(req *Request) []Validator {
	maxTTL := e.maxTTL(req)
	vs := []Validator{spiffeIdentity{e.opts.TrustDomain}}
	if !e.opts.SkipCSRIdentity && req.CSR != nil {
		vs = append(vs, csrIdentity{})
	}
	return append(vs, extraSANs{req.Rule}, commonName{req.Rule}, notCA{}, keyType{}, ttl{maxTTL})
}

// leafTTL is the lifetime req gets, and the shortest it accepts.
func (e *Engine) leafTTL(req *Request) (ttl, minTTL time.Duration, err error) {
	if req.hasDuration() {
		ttl, err = e.lifetime(req, req.plan.duration)
		return ttl, req.plan.duration.Min, err
	}
	ttl = req.TTL
	if ttl <= 0 {
		// The default obeys the maximum too (a rule may lower it below the default).
		ttl = e.opts.DefaultTTL
		if m := e.maxTTL(req); m > 0 && ttl > m {
			ttl = m
		}
	}
	return ttl, 0, nil
}

// modifiers returns an array, not a slice, so that it stays on the stack
// (issuance throughput: no allocation per request for the list itself).
func (e *Engine) modifiers(req *Request, ttl, minTTL time.Duration) [6]Modifier {
	return [6]Modifier{
		leafSubjectAndSANs{},
		leafUsages{},
		subjectKeyID{},
		randomSerial{},
		validity{now: e.opts.Now, ttl: ttl, min: minTTL, report: req.hasDuration()},
		crlDistribution{urls: e.opts.CRLDistributionPoints},
	}
}

// Template validates req and returns the certificate template to sign with
// issuer. Every error is a *caerr.Error; on error nothing else happened.
func (e *Engine) Template(req *Request, issuer *x509.Certificate) (*x509.Certificate, error) {
	req.Rule = e.ruleFor(req.Identity)
	req.setPlan()
	if err := req.checkKeySource(); err != nil {
		return nil, err
	}
	for _, v := range e.validators(req) {
		if err := v.Validate(req); err != nil {
			return nil, err
		}
	}
	if err := e.checkPlan(req, req.plan, issuer); err != nil {
		return nil, err
	}
	if err := runValidators(req); err != nil {
		return nil, err
	}
	ttl, minTTL, err := e.leafTTL(req)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{PublicKey: req.publicKey()}
	for _, m := range e.modifiers(req, ttl, minTTL) {
		if err := m.Modify(tmpl, req, issuer); err != nil {
			return nil, err
		}
	}
	return tmpl, nil
}
