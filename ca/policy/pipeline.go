package policy

import (
	"crypto/x509"
	"net/url"
	"time"
)

// Request is what the policy sees: the authenticated identity (never taken
// from the CSR), the parsed and signature-checked CSR, and the requested TTL.
type Request struct {
	Identity *url.URL
	CSR      *x509.CertificateRequest
	// TTL is the requested lifetime; zero or negative means the default.
	TTL time.Duration
	// Rule is the named exception that applies, set by the Engine.
	Rule *Rule
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
	if !e.opts.SkipCSRIdentity {
		vs = append(vs, csrIdentity{})
	}
	return append(vs, extraSANs{req.Rule}, commonName{req.Rule}, notCA{}, keyType{}, ttl{maxTTL})
}

func (e *Engine) modifiers(req *Request) []Modifier {
	ttl := req.TTL
	if ttl <= 0 {
		// The default obeys the maximum too (a rule may lower it below the default).
		ttl = e.opts.DefaultTTL
		if m := e.maxTTL(req); m > 0 && ttl > m {
			ttl = m
		}
	}
	return []Modifier{
		leafSubjectAndSANs{},
		leafUsages{},
		subjectKeyID{},
		randomSerial{},
		validity{now: e.opts.Now, ttl: ttl},
		crlDistribution{urls: e.opts.CRLDistributionPoints},
	}
}

// Template validates req and returns the certificate template to sign with
// issuer. Every error is a *caerr.Error; on error nothing else happened.
func (e *Engine) Template(req *Request, issuer *x509.Certificate) (*x509.Certificate, error) {
	req.Rule = e.ruleFor(req.Identity)
	for _, v := range e.validators(req) {
		if err := v.Validate(req); err != nil {
			return nil, err
		}
	}
	tmpl := &x509.Certificate{PublicKey: req.CSR.PublicKey}
	for _, m := range e.modifiers(req) {
		if err := m.Modify(tmpl, req, issuer); err != nil {
			return nil, err
		}
	}
	return tmpl, nil
}
