package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.step.sm/crypto/jose"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/identity"
)

// Failure reasons of the JWT authenticator.
const (
	ReasonMalformedToken       = "malformed_token"
	ReasonUnsupportedAlgorithm = "unsupported_algorithm"
	ReasonUnknownKey           = "unknown_key"
	ReasonBadSignature         = "bad_signature"
	ReasonExpired              = "expired"
	ReasonNotYetValid          = "not_yet_valid"
	ReasonInvalidClaims        = "invalid_claims"
	// ReasonWrongAudience (shared with TokenReview): aud holds none of ours.
	// ReasonNoIdentity: the template failed or did not give a SPIFFE ID of
	// the trust domain.
	ReasonNoIdentity = "no_identity"
	// ReasonJWKSUnavailable: no keys could ever be loaded. The failure
	// wraps ErrUnavailable.
	ReasonJWKSUnavailable = "jwks_unavailable"
	// ReasonNamespaceNotAllowed: AllowedNamespaces is set and the identity
	// is not spiffe://<td>/ns/<ns>/sa/<sa> with ns in it.
	ReasonNamespaceNotAllowed = "namespace_not_allowed"
)

// DefaultIdentityTemplate maps Kubernetes-style claims to an identity.
const DefaultIdentityTemplate = "spiffe://{{.TrustDomain}}/ns/{{.Claims.namespace}}/sa/{{.Claims.sub}}"

// Defaults of JWTOptions.
const (
	DefaultJWKSRefresh    = 10 * time.Minute
	DefaultJWKSMinRefresh = 30 * time.Second
	DefaultJWKSTimeout    = 10 * time.Second
	DefaultJWTLeeway      = 30 * time.Second
)

// DefaultJWTAlgorithms are the signature algorithms accepted by default.
var DefaultJWTAlgorithms = []string{jose.RS256, jose.ES256, jose.EdDSA}

// JWTOptions configure NewJWT. Exactly one of JWKSURL and JWKSFile is set.
type JWTOptions struct {
	// Issuer is the exact iss claim. Tokens from other issuers are not
	// this authenticator's (ErrNoCredentials). Required.
	Issuer string
	// Audiences: the aud claim must hold at least one. Required.
	Audiences []string
	// JWKSURL is fetched over HTTPS (HTTP only to loopback).
	JWKSURL string
	// JWKSFile is read from disk, and re-read like a URL.
	JWKSFile string
	// HTTPClient fetches JWKSURL; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// RefreshInterval: keys older than this are reloaded on the next
	// request. Default 10 min.
	RefreshInterval time.Duration
	// MinRefreshInterval: keys are never loaded more often, even for
	// unknown kids. Default 30 s. Only loads that ran count: a request
	// that gives up waiting does not end the load it started.
	MinRefreshInterval time.Duration
	// FetchTimeout bounds one JWKS load, which runs detached from the
	// request that started it. Default 10 s.
	FetchTimeout time.Duration
	// Algorithms accepted, from RS256/384/512, PS256/384/512, ES256/384/512
	// and EdDSA. Default DefaultJWTAlgorithms. HMAC and "none" never are.
	Algorithms []string
	// Leeway for exp, nbf and iat. Default 30 s; negative means none.
	Leeway time.Duration
	// TrustDomain of the identities. Required.
	TrustDomain string
	// IdentityTemplate is a text/template (missingkey=error) over
	// {TrustDomain, Claims}; it must give a SPIFFE ID in TrustDomain.
	// String claim values are path-escaped first, so a claim cannot add
	// path segments: one holding "/" or any character a SPIFFE ID does not
	// allow makes the identity invalid. Default DefaultIdentityTemplate.
	//
	// Whoever can set the mapped claims at the issuer can thereby obtain
	// any identity the template can give; see AllowedNamespaces.
	IdentityTemplate string
	// AllowedNamespaces, when not empty, confines the issuer: the identity
	// must be spiffe://<td>/ns/<ns>/sa/<sa> with ns in this list, or the
	// token is refused (ReasonNamespaceNotAllowed). Each entry is a
	// Kubernetes namespace name (an RFC 1123 label).
	AllowedNamespaces []string
	// Clock is the clock; default the real one.
	Clock clock.PassiveClock
}

// JWTAuthenticator authenticates bearer JWTs from one OIDC issuer by the
// issuer's JWKS: signature, iss, aud, exp (required), nbf and iat, then maps
// the claims to a SPIFFE ID with a template. A bearer token whose
// unverified iss is another issuer's, or that is not a compact JWS, gives
// ErrNoCredentials so that TokenReview is tried next.
type JWTAuthenticator struct {
	issuer      string
	audiences   []string
	algorithms  []string
	leeway      time.Duration
	trustDomain string
	tmpl        *template.Template
	allowedNS   []string
	keys        *keySet
	clock       clock.PassiveClock
}

// NewJWT returns the OIDC/JWKS authenticator. It does not load the keys:
// that happens on the first request, so meshca starts while the issuer is
// down.
func NewJWT(o JWTOptions) (*JWTAuthenticator, error) {
	switch {
	case o.Issuer == "":
		return nil, errors.New("authn: JWT needs an Issuer")
	case len(o.Audiences) == 0 || slices.Contains(o.Audiences, ""):
		return nil, errors.New("authn: JWT needs non-empty Audiences")
	case o.TrustDomain == "":
		return nil, errors.New("authn: JWT needs a TrustDomain")
	case (o.JWKSURL == "") == (o.JWKSFile == ""):
		return nil, errors.New("authn: JWT needs exactly one of JWKSURL and JWKSFile")
	}
	a := &JWTAuthenticator{
		issuer:      o.Issuer,
		audiences:   slices.Clone(o.Audiences),
		algorithms:  slices.Clone(o.Algorithms),
		leeway:      orDefault(o.Leeway, DefaultJWTLeeway),
		trustDomain: o.TrustDomain,
		allowedNS:   slices.Clone(o.AllowedNamespaces),
		clock:       o.Clock,
	}
	for _, ns := range a.allowedNS {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("authn: JWT allowed namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	if a.clock == nil {
		a.clock = clock.RealClock{}
	}
	if a.leeway < 0 {
		a.leeway = 0
	}
	if len(a.algorithms) == 0 {
		a.algorithms = slices.Clone(DefaultJWTAlgorithms)
	}
	for _, alg := range a.algorithms {
		if !supportedAlgorithm(alg) {
			return nil, fmt.Errorf("authn: JWT algorithm %q is not supported", alg)
		}
	}
	text := o.IdentityTemplate
	if text == "" {
		text = DefaultIdentityTemplate
	}
	tmpl, err := template.New("identity").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("authn: JWT identity template: %w", err)
	}
	a.tmpl = tmpl

	ks := &keySet{
		refresh:    orDefault(o.RefreshInterval, DefaultJWKSRefresh),
		minRefresh: orDefault(o.MinRefreshInterval, DefaultJWKSMinRefresh),
		timeout:    orDefault(o.FetchTimeout, DefaultJWKSTimeout),
	}
	if o.JWKSFile != "" {
		ks.load, ks.source = fileLoader(o.JWKSFile), o.JWKSFile
	} else {
		client := o.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		if ks.load, err = urlLoader(client, o.JWKSURL); err != nil {
			return nil, err
		}
		ks.source = o.JWKSURL
	}
	a.keys = ks
	return a, nil
}

// Name implements Authenticator.
func (*JWTAuthenticator) Name() string { return JWT }

// Authenticate implements Authenticator.
func (a *JWTAuthenticator) Authenticate(ctx context.Context, creds Credentials) (*Caller, error) {
	token := creds.BearerToken
	if token == "" || len(token) > maxTokenSize || strings.Count(token, ".") != 2 {
		return nil, ErrNoCredentials
	}
	tok, err := jose.ParseSigned(token)
	if err != nil {
		return nil, ErrNoCredentials
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer != a.issuer {
		return nil, ErrNoCredentials
	}
	// From here on the token claims to be our issuer's.
	if len(tok.Headers) != 1 {
		return nil, fail(JWT, ReasonMalformedToken, "the token must carry exactly one signature")
	}
	h := tok.Headers[0]
	if !slices.Contains(a.algorithms, h.Algorithm) {
		return nil, fail(JWT, ReasonUnsupportedAlgorithm, fmt.Sprintf("algorithm %q is not accepted", truncate(h.Algorithm, 32)))
	}
	now := a.clock.Now()
	keys, err := a.keys.keysFor(ctx, h.KeyID, now)
	if err != nil {
		return nil, &Failure{Authenticator: JWT, Reason: ReasonJWKSUnavailable, Message: err.Error(), Err: ErrUnavailable}
	}
	var claims jose.Claims
	var raw map[string]any
	candidates, verified := 0, false
	for _, k := range keys {
		if (k.Algorithm != "" && k.Algorithm != h.Algorithm) || !algorithmFitsKey(h.Algorithm, k.Key) {
			continue
		}
		candidates++
		if tok.Claims(k.Key, &claims, &raw) == nil {
			verified = true
			break
		}
	}
	switch {
	case candidates == 0:
		return nil, fail(JWT, ReasonUnknownKey, fmt.Sprintf("no key of the issuer has kid %q and algorithm %s", truncate(h.KeyID, 64), h.Algorithm))
	case !verified:
		return nil, fail(JWT, ReasonBadSignature, "the token's signature does not verify")
	}
	if err := a.checkClaims(&claims, now); err != nil {
		return nil, err
	}
	id, err := a.identity(raw)
	if err != nil {
		return nil, fail(JWT, ReasonNoIdentity, err.Error())
	}
	c := &Caller{Identity: id, Authenticator: JWT}
	if k, err := identity.ParseKubernetes(id.String()); err == nil {
		c.Namespace, c.ServiceAccount = k.Namespace, k.ServiceAccount
	}
	if len(a.allowedNS) > 0 && (c.Namespace == "" || !slices.Contains(a.allowedNS, c.Namespace)) {
		return nil, fail(JWT, ReasonNamespaceNotAllowed, fmt.Sprintf("identity %s is not in a namespace allowed for issuer %s", id, a.issuer))
	}
	return c, nil
}

// Warning describes, for the start-up log, what trusting this issuer
// means: whoever can set the claims the identity template reads can
// obtain any identity it gives.
func (a *JWTAuthenticator) Warning() string {
	w := "tokens of OIDC issuer " + a.issuer + " become workload identities through the identity template; " +
		"anyone who can set the claims it reads at the issuer can obtain any identity it maps to"
	if len(a.allowedNS) == 0 {
		return w + "; set authentication.jwt.allowedNamespaces to confine the issuer to fixed namespaces"
	}
	return w + " in namespaces " + strings.Join(a.allowedNS, ",")
}

func (a *JWTAuthenticator) checkClaims(c *jose.Claims, now time.Time) error {
	if c.Expiry == nil {
		return fail(JWT, ReasonInvalidClaims, "the token has no exp claim")
	}
	err := c.ValidateWithLeeway(jose.Expected{Issuer: a.issuer, Time: now}, a.leeway)
	switch {
	case errors.Is(err, jose.ErrExpired):
		return fail(JWT, ReasonExpired, "the token expired at "+c.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jose.ErrNotValidYet), errors.Is(err, jose.ErrIssuedInTheFuture):
		return fail(JWT, ReasonNotYetValid, "the token is not valid yet")
	case err != nil:
		return fail(JWT, ReasonInvalidClaims, jose.TrimPrefix(err).Error())
	}
	if !intersects(c.Audience, a.audiences) {
		return fail(JWT, ReasonWrongAudience, "the token is not for audience "+strings.Join(a.audiences, ","))
	}
	return nil
}

// identityData is what the identity template sees.
type identityData struct {
	TrustDomain string
	Claims      map[string]any
}

func (a *JWTAuthenticator) identity(claims map[string]any) (*url.URL, error) {
	var b strings.Builder
	if err := a.tmpl.Execute(&b, identityData{TrustDomain: a.trustDomain, Claims: escapeClaims(claims).(map[string]any)}); err != nil {
		return nil, fmt.Errorf("identity template: %w", err)
	}
	td, err := identity.TrustDomain(a.trustDomain)
	if err != nil {
		return nil, err
	}
	id, err := identity.Workload(strings.TrimSpace(b.String()), td)
	if err != nil {
		return nil, err
	}
	return id.URL(), nil
}

// escapeClaims path-escapes every string in a decoded JSON value.
func escapeClaims(v any) any {
	switch v := v.(type) {
	case string:
		return url.PathEscape(v)
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = escapeClaims(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = escapeClaims(x)
		}
		return s
	default:
		return v
	}
}

func supportedAlgorithm(alg string) bool {
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA:
		return true
	}
	return false
}

// algorithmFitsKey keeps a key from being used with another family's
// algorithm, and refuses RSA keys under 2048 bits.
func algorithmFitsKey(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return k.Curve == elliptic.P256()
		case jose.ES384:
			return k.Curve == elliptic.P384()
		case jose.ES512:
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}
