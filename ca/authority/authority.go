// Package authority is meshca's signing engine. It holds the active CA
// material (swapped atomically on rotation), runs the issuance policy, signs,
// makes the issuance record durable and only then returns the chain in
// Istio's order. Every decision is audited. Front doors call Sign; they never
// touch keys, the store or the policy directly.
//
// The policy's leaf template is the same for every certificate profile
// (ca/profile); the authority picks the encoder (ca/certenc): classical,
// Catalyst (classical + ML-DSA alternative signature), composite or pure
// ML-DSA, and publishes where the post-quantum chain is anchored.
package authority

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// ProfileClassical is the profile of certificates signed with classical keys only.
const ProfileClassical = string(profile.Classical)

// Material is one CA generation ready to sign.
type Material struct {
	Generation uint64
	Bundle     *root.Bundle
	// Signer makes the certificate signatures: classical for the classical
	// and catalyst profiles, ML-DSA or composite for mldsa and composite.
	Signer crypto.Signer
	// Profile is the kind of CA; it decides which leaf profiles it issues.
	Profile profile.Name
	// AltSigner is a catalyst CA's ML-DSA key, which makes the alternative
	// signatures (2.5.29.73/.74); nil for the other profiles.
	AltSigner certenc.AlgorithmSigner

	// pq holds the post-quantum trust anchors (see PQAnchors).
	pq pqAnchors

	// middlePEM holds Cert and its intermediates, one PEM block per element;
	// rootsPEM holds every active root concatenated as one element.
	middlePEM []string
	rootsPEM  string
	rootPool  *x509.CertPool
	interPool *x509.CertPool
}

// NewMaterial prepares a CA of profile p with key for signing, precomputes
// the response chain and works out its post-quantum trust anchors.
func NewMaterial(gen uint64, b *root.Bundle, key root.CAKey, p profile.Name) (*Material, error) {
	if err := checkKeyForProfile(key, p); err != nil {
		return nil, err
	}
	m := &Material{Generation: gen, Bundle: b, Signer: key.Signer, Profile: p, AltSigner: key.Alt}
	for _, c := range append([]*x509.Certificate{b.Cert}, b.Intermediates...) {
		m.middlePEM = append(m.middlePEM, string(root.EncodePEM(c)))
	}
	m.rootsPEM = string(root.EncodePEM(b.Roots...))
	m.rootPool, m.interPool = x509.NewCertPool(), x509.NewCertPool()
	for _, r := range b.Roots {
		m.rootPool.AddCert(r)
	}
	for _, c := range append([]*x509.Certificate{b.Cert}, b.Intermediates...) {
		m.interPool.AddCert(c)
	}
	var err error
	if m.pq, err = computePQAnchors(b, key, p); err != nil {
		return nil, err
	}
	return m, nil
}

// RootPool holds every active root. Callers must not modify it.
func (m *Material) RootPool() *x509.CertPool { return m.rootPool }

// IntermediatePool holds the signing certificate and its intermediates.
func (m *Material) IntermediatePool() *x509.CertPool { return m.interPool }

// RootsPEM returns every active root as one PEM bundle.
func (m *Material) RootsPEM() string { return m.rootsPEM }

// Authority signs workload certificates.
type Authority struct {
	material atomic.Pointer[Material]
	policy   *policy.Engine
	records  store.Issuances
	audit    *audit.Logger
	metrics  *metrics
	now      func() time.Time
	// profile is the default leaf profile (issuance.profile); empty means
	// the CA's own default.
	profile profile.Name
	// verify is issuance.verifySignatures.
	verify certenc.VerifyMode
	// crlURL is crl.url: the base of the generation CRL's distribution
	// point in every leaf; empty for none.
	crlURL string
}

// Option configures an Authority.
type Option func(*Authority)

// WithAudit sets the audit logger.
func WithAudit(l *audit.Logger) Option { return func(a *Authority) { a.audit = l } }

// WithRegisterer registers the authority's metrics.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(a *Authority) { a.metrics = newMetrics(r) }
}

// WithProfile sets the default leaf profile (issuance.profile), which every
// front door gets unless a request names another one.
func WithProfile(p profile.Name) Option { return func(a *Authority) { a.profile = p } }

// WithVerifySignatures sets which fresh signatures are checked against the
// CA's public key (issuance.verifySignatures; see certenc.VerifyMode). The
// default is certenc.VerifyAuto.
func WithVerifySignatures(v certenc.VerifyMode) Option { return func(a *Authority) { a.verify = v } }

// VerifyModeOf maps issuance.verifySignatures to certenc's mode; the
// configuration has validated the value.
func VerifyModeOf(v string) certenc.VerifyMode {
	if v == config.VerifySignaturesAlways {
		return certenc.VerifyAlways
	}
	return certenc.VerifyAuto
}

// WithCRLURL makes every leaf carry the distribution point of its
// generation's CRL, <base>/gen-<id>.crl (crl.url; RFC 5280 section
// 4.2.1.13), after any issuance.crlDistributionPoints.
func WithCRLURL(base string) Option {
	return func(a *Authority) { a.crlURL = strings.TrimRight(base, "/") }
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(a *Authority) { a.now = now } }

// New returns an Authority that signs with m under pol and records to records.
func New(m *Material, pol *policy.Engine, records store.Issuances, opts ...Option) *Authority {
	a := &Authority{policy: pol, records: records, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if a.audit == nil {
		a.audit = audit.New(nil)
	}
	if a.metrics == nil {
		a.metrics = newMetrics(nil)
	}
	a.material.Store(m)
	return a
}

// Roots implements the trust source of client-certificate authentication.
func (a *Authority) Roots() *x509.CertPool { return a.material.Load().RootPool() }

// Intermediates implements the trust source of client-certificate authentication.
func (a *Authority) Intermediates() *x509.CertPool { return a.material.Load().IntermediatePool() }

// Records returns the issuance records the authority writes.
func (a *Authority) Records() store.Issuances { return a.records }

// Material returns the active CA material.
func (a *Authority) Material() *Material { return a.material.Load() }

// SetMaterial atomically switches signing to m (rotation).
func (a *Authority) SetMaterial(m *Material) { a.material.Store(m) }

// Request is a signing request from a front door. Identity is the
// authenticated identity; the CSR only contributes its public key.
type Request struct {
	CSR []byte
	// PublicKey is the subject's key when the front door has proven its
	// possession itself (a PodCertificateRequest): set it instead of CSR.
	PublicKey crypto.PublicKey
	Identity  *url.URL
	TTL       time.Duration
	Requester string
	// Policy overrides the default policy engine (front-door specific rules).
	Policy *policy.Engine
	// Profile overrides the default leaf profile; it must be one the CA's
	// profile can issue.
	Profile profile.Name
	// Options are the front door's per-request additions to the policy
	// pipeline (policy.WithUsages, WithDuration, RequestCA, WithValidator);
	// the policy engine still decides what is issued.
	Options []policy.SignOption
}

// Result is a signed certificate.
type Result struct {
	// DER is the issued certificate.
	DER []byte
	// Chain is Istio's response order: leaf, each intermediate as its own
	// element, then every active root as one final element.
	Chain  []string
	Record store.Issuance
	// Adjustments say what the policy granted differently from what was
	// asked (e.g. keyEncipherment dropped for an ECDSA key), for the front
	// door to tell the requester; nil when nothing was.
	Adjustments []policy.Adjustment
}

// Leaf parses the issued certificate. Issuance itself does not parse what
// it signed (the record's serial and validity come from the template the
// encoder wrote), so callers that need the parsed form pay for it here,
// on every call.
func (r *Result) Leaf() (*x509.Certificate, error) { return x509.ParseCertificate(r.DER) }

// Sign validates, signs, records durably and returns the chain. On any
// error nothing has been recorded and the error is a *caerr.Error.
func (a *Authority) Sign(ctx context.Context, req Request) (*Result, error) {
	start := a.now()
	m := a.material.Load()
	leaf := a.leafProfile(req, m)
	res, err := a.sign(ctx, req, m, leaf)
	a.metrics.observe(string(leaf), err, a.now().Sub(start))
	if err != nil {
		a.audit.Denied(ctx, audit.Decision{
			Identity: idString(req.Identity), Requester: req.Requester, Profile: string(leaf),
			Reason: caerr.ReasonOf(err), Message: err.Error(),
		})
		return nil, err
	}
	a.audit.Issued(ctx, audit.Decision{
		Identity: res.Record.Identity, Requester: req.Requester, Serial: res.Record.Serial,
		Profile: res.Record.Profile, Generation: res.Record.Generation,
		NotAfter: res.Record.NotAfter.UTC().Format(time.RFC3339),
	})
	return res, nil
}

func idString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}

func (a *Authority) sign(ctx context.Context, req Request, m *Material, leafProfile profile.Name) (*Result, error) {
	if m == nil {
		return nil, caerr.New(caerr.Unavailable, "ca_not_ready", "the CA has no signing material yet")
	}
	if err := m.Profile.CheckLeaf(leafProfile); err != nil {
		return nil, caerr.New(caerr.InvalidArgument, ReasonProfileNotSupported, "%v", err)
	}
	// Reserve the record now, so that a store that commits in groups can
	// wait for it while it is being signed.
	put := a.records.PutIssuance
	if r, ok := a.records.(store.Reserver); ok {
		res := r.Reserve()
		defer res.Cancel()
		put = res.PutIssuance
	}
	preq := &policy.Request{Identity: req.Identity, PublicKey: req.PublicKey, TTL: req.TTL, Extra: req.Options}
	if req.PublicKey == nil || len(req.CSR) > 0 {
		// With both, the policy refuses the request as ambiguous.
		csr, err := policy.ParseCSR(req.CSR)
		if err != nil {
			return nil, err
		}
		preq.CSR = csr
	}
	pol := req.Policy
	if pol == nil {
		pol = a.policy
	}
	tmpl, err := pol.Template(preq, m.Bundle.Cert)
	if err != nil {
		return nil, err
	}
	if a.crlURL != "" {
		tmpl.CRLDistributionPoints = append(tmpl.CRLDistributionPoints, a.crlURL+"/"+store.GenerationScope(m.Generation)+".crl")
	}
	der, err := m.issue(tmpl, leafProfile, a.verify)
	if err != nil {
		return nil, caerr.Wrap(err, caerr.Internal, "sign_failed", "sign certificate")
	}
	sum := sha256.Sum256(der)
	rec := store.Issuance{
		Serial:      hex.EncodeToString(tmpl.SerialNumber.Bytes()),
		Identity:    req.Identity.String(),
		NotBefore:   encodedTime(tmpl.NotBefore),
		NotAfter:    encodedTime(tmpl.NotAfter),
		Fingerprint: hex.EncodeToString(sum[:]),
		Profile:     string(leafProfile),
		Requester:   req.Requester,
		Generation:  m.Generation,
		IssuedAt:    a.now().UTC(),
	}
	if err := put(ctx, rec); err != nil {
		// Not acknowledged: the caller retries and the certificate is discarded.
		return nil, caerr.Wrap(err, caerr.Unavailable, "store_unavailable", "record issuance")
	}
	chain := make([]string, 0, len(m.middlePEM)+2)
	chain = append(chain, certificatePEM(der))
	chain = append(chain, m.middlePEM...)
	chain = append(chain, m.rootsPEM)
	return &Result{DER: der, Chain: chain, Record: rec, Adjustments: preq.Adjustments()}, nil
}

// encodedTime is t as the certificate carries it: RFC 5280 4.1.2.5 times
// are whole seconds in UTC (ca/certenc drops the fraction), which is also
// what x509.ParseCertificate returns.
func encodedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// ChainPEM joins a response chain into one PEM document (for the CLI).
func ChainPEM(chain []string) string { return strings.Join(chain, "") }

func auditServing(rec store.Issuance) audit.Decision {
	return audit.Decision{
		Identity: rec.Identity, Requester: rec.Requester, Serial: rec.Serial, Profile: rec.Profile,
		Generation: rec.Generation, NotAfter: rec.NotAfter.UTC().Format(time.RFC3339),
	}
}
