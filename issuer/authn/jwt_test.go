package authn_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/jose"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/issuer/authn"
)

const (
	oidcIssuer   = "https://idp.example.com"
	oidcAudience = "meshca"
)

func signJWT(t *testing.T, key any, alg, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(t, err)
	tok, err := jose.Signed(signer).Claims(claims).CompactSerialize()
	require.NoError(t, err)
	return tok
}

// idp is a loopback OIDC issuer serving its JWKS over TLS.
type idp struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex
	keys   []jose.JSONWebKey
	status int

	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{status: http.StatusOK}
	var err error
	p.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, p.ed, err = ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	p.keys = []jose.JSONWebKey{
		{Key: p.rsa.Public(), KeyID: "rsa-1", Algorithm: jose.RS256, Use: "sig"},
		{Key: p.ec.Public(), KeyID: "ec-1", Algorithm: jose.ES256, Use: "sig"},
		{Key: p.ed.Public(), KeyID: "ed-1"},
	}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.status != http.StatusOK {
			w.WriteHeader(p.status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: p.keys})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) set(status int, keys ...jose.JSONWebKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
	if keys != nil {
		p.keys = keys
	}
}

type jwtFixture struct {
	a     *authn.JWTAuthenticator
	idp   *idp
	clock *testingclock.FakeClock
}

func newJWTAuthenticator(t *testing.T, p *idp, mod func(*authn.JWTOptions)) *jwtFixture {
	t.Helper()
	f := &jwtFixture{idp: p, clock: newClock()}
	o := authn.JWTOptions{
		Issuer: oidcIssuer, Audiences: []string{oidcAudience}, TrustDomain: trustDomain,
		JWKSURL: p.srv.URL + "/jwks", HTTPClient: p.srv.Client(), Clock: f.clock,
	}
	if mod != nil {
		mod(&o)
	}
	var err error
	f.a, err = authn.NewJWT(o)
	require.NoError(t, err)
	return f
}

func (f *jwtFixture) claims(mod map[string]any) map[string]any {
	now := f.clock.Now()
	c := map[string]any{
		"iss": oidcIssuer, "aud": []string{oidcAudience}, "sub": "checkout", "namespace": "payments",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	maps.Copy(c, mod)
	for k, v := range mod {
		if v == nil {
			delete(c, k)
		}
	}
	return c
}

func (f *jwtFixture) auth(t *testing.T, token string) (*authn.Caller, error) {
	return f.a.Authenticate(testCtx(t), authn.Credentials{BearerToken: token})
}

func TestJWT_AuthenticatesTokenSignedByIssuerKeyAndMapsClaimsToIdentity(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	for name, tok := range map[string]string{
		"RS256":             signJWT(t, p.rsa, jose.RS256, "rsa-1", f.claims(nil)),
		"ES256":             signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)),
		"EdDSA":             signJWT(t, p.ed, jose.EdDSA, "ed-1", f.claims(nil)),
		"EdDSA without kid": signJWT(t, p.ed, jose.EdDSA, "", f.claims(nil)),
	} {
		t.Run(name, func(t *testing.T) {
			caller, err := f.auth(t, tok)
			require.NoError(t, err)
			require.Equal(t, "spiffe://cluster.local/ns/payments/sa/checkout", caller.Identity.String())
			require.Equal(t, authn.JWT, caller.Authenticator)
			require.Equal(t, "payments", caller.Namespace)
			require.Equal(t, "checkout", caller.ServiceAccount)
		})
	}
	require.EqualValues(t, 1, p.fetches.Load(), "the JWKS is fetched once and cached")
}

func TestJWT_RejectsTokensThatFailVerification(t *testing.T) {
	p := newIDP(t)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(p.rsa.Public())
	require.NoError(t, err)
	f := newJWTAuthenticator(t, p, nil)
	now := f.clock.Now()
	b64 := base64.RawURLEncoding.EncodeToString
	payload, err := json.Marshal(f.claims(nil))
	require.NoError(t, err)

	cases := map[string]struct {
		token  string
		reason string
	}{
		"wrong audience": {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"aud": []string{"someone-else"}})), authn.ReasonWrongAudience},
		"expired beyond the leeway": {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{
			"iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Minute).Unix()})), authn.ReasonExpired},
		"not valid before a future nbf":                      {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"nbf": now.Add(5 * time.Minute).Unix()})), authn.ReasonNotYetValid},
		"no exp claim":                                       {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"exp": nil})), authn.ReasonInvalidClaims},
		"signed by an attacker's key under the issuer's kid": {signJWT(t, attacker, jose.ES256, "ec-1", f.claims(nil)), authn.ReasonBadSignature},
		"unknown kid":                                        {signJWT(t, attacker, jose.ES256, "attacker-1", f.claims(nil)), authn.ReasonUnknownKey},
		"HS256 with the issuer's public key as HMAC secret":  {signJWT(t, pubDER, jose.HS256, "rsa-1", f.claims(nil)), authn.ReasonUnsupportedAlgorithm},
		"alg none":                                {b64([]byte(`{"alg":"none","kid":"rsa-1"}`)) + "." + b64(payload) + ".", authn.ReasonUnsupportedAlgorithm},
		"ES256 key used with RS256 header":        {signJWT(t, p.rsa, jose.RS256, "ec-1", f.claims(nil)), authn.ReasonUnknownKey},
		"namespace claim injecting path segments": {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"namespace": "istio-system/sa/istiod/x"})), authn.ReasonNoIdentity},
		"namespace claim of dot-dot":              {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"namespace": ".."})), authn.ReasonNoIdentity},
		"claim the template needs is missing":     {signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"namespace": nil})), authn.ReasonNoIdentity},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			caller, err := f.auth(t, tc.token)
			require.Nil(t, caller)
			requireFailure(t, err, tc.reason)
			require.False(t, authn.IsUnavailable(err))
			require.NotContains(t, err.Error(), tc.token)
		})
	}
}

func TestJWT_UnknownKidRefetchesJWKSAtMostOncePerMinRefresh(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	forged, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, err = f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)
	require.EqualValues(t, 1, p.fetches.Load())

	f.clock.Step(authn.DefaultJWKSMinRefresh)
	for range 3 {
		_, err = f.auth(t, signJWT(t, forged, jose.ES256, "made-up", f.claims(nil)))
		requireFailure(t, err, authn.ReasonUnknownKey)
	}
	require.EqualValues(t, 2, p.fetches.Load(), "a flood of made-up kids causes one fetch")
}

func TestJWT_PicksUpRotatedIssuerKey(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	_, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)

	next, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p.set(http.StatusOK, jose.JSONWebKey{Key: next.Public(), KeyID: "ec-2", Algorithm: jose.ES256, Use: "sig"})
	f.clock.Step(authn.DefaultJWKSMinRefresh)
	caller, err := f.auth(t, signJWT(t, next, jose.ES256, "ec-2", f.claims(nil)))
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/payments/sa/checkout", caller.Identity.String())

	f.clock.Step(authn.DefaultJWKSRefresh)
	_, err = f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	requireFailure(t, err, authn.ReasonUnknownKey)
}

func TestJWT_IssuerOutageWithoutKeysIsUnavailable(t *testing.T) {
	p := newIDP(t)
	p.set(http.StatusServiceUnavailable)
	f := newJWTAuthenticator(t, p, nil)
	tok := signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil))
	_, err := f.auth(t, tok)
	requireFailure(t, err, authn.ReasonJWKSUnavailable)
	require.True(t, authn.IsUnavailable(err))

	p.set(http.StatusOK)
	_, err = f.auth(t, tok)
	requireFailure(t, err, authn.ReasonJWKSUnavailable) // within MinRefresh: not fetched again
	require.EqualValues(t, 1, p.fetches.Load())
	f.clock.Step(authn.DefaultJWKSMinRefresh)
	_, err = f.auth(t, tok)
	require.NoError(t, err)
}

func TestJWT_IssuerOutageAfterLoadKeepsStaleKeys(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	_, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)
	p.set(http.StatusInternalServerError)
	f.clock.Step(authn.DefaultJWKSRefresh)
	_, err = f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)
	require.EqualValues(t, 2, p.fetches.Load(), "the stale set was refreshed, unsuccessfully")
}

func TestJWT_TokensOfOtherIssuersAreNotItsCredentials(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	for name, tok := range map[string]string{
		"another issuer":         signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"iss": "https://other.example"})),
		"no issuer":              signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{"iss": nil})),
		"not a JWT":              "opaque-token",
		"JWS JSON serialization": `{"payload":"e30","signatures":[]}`,
		"empty":                  "",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.auth(t, tok)
			require.ErrorIs(t, err, authn.ErrNoCredentials)
		})
	}
	require.Zero(t, p.fetches.Load(), "foreign tokens never make the issuer's JWKS load")
}

func TestJWT_KubernetesTokenFallsThroughToTokenReviewInChain(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	reviewer := newReviewer(t, nil)
	token, err := env.MintToken(testCtx(t), "jwt-chain", "app", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)

	chain := authn.Chain{f.a, reviewer.a}
	caller, err := chain.Authenticate(testCtx(t), authn.Credentials{BearerToken: token})
	require.NoError(t, err)
	require.Equal(t, authn.TokenReview, caller.Authenticator)
	require.Equal(t, "spiffe://cluster.local/ns/jwt-chain/sa/app", caller.Identity.String())

	caller, err = chain.Authenticate(testCtx(t), authn.Credentials{BearerToken: signJWT(t, p.ed, jose.EdDSA, "ed-1", f.claims(nil))})
	require.NoError(t, err)
	require.Equal(t, authn.JWT, caller.Authenticator)
}

func TestJWT_TemplateMustGiveSPIFFEIDInTrustDomain(t *testing.T) {
	p := newIDP(t)
	for name, tmpl := range map[string]string{
		"foreign trust domain": "spiffe://evil.example/ns/{{.Claims.namespace}}/sa/{{.Claims.sub}}",
		"not a SPIFFE ID":      "https://{{.TrustDomain}}/{{.Claims.sub}}",
		"empty path segment":   "spiffe://{{.TrustDomain}}/ns//sa/{{.Claims.sub}}",
	} {
		t.Run(name, func(t *testing.T) {
			f := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) { o.IdentityTemplate = tmpl })
			_, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
			requireFailure(t, err, authn.ReasonNoIdentity)
		})
	}
	f := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) {
		o.IdentityTemplate = `spiffe://{{.TrustDomain}}/idp/{{index .Claims "https://example.com/claims" "team"}}/{{.Claims.sub}}`
	})
	caller, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(map[string]any{
		"https://example.com/claims": map[string]any{"team": "payments"}})))
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/idp/payments/checkout", caller.Identity.String())
	require.Empty(t, caller.Namespace, "not an ns/sa identity")
}

func TestJWT_ReadsJWKSFromFile(t *testing.T) {
	p := newIDP(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: p.ec.Public(), KeyID: "ec-1"},
		{Key: []byte("a symmetric key is ignored"), KeyID: "hmac"},
	}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	f := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) { o.JWKSURL, o.JWKSFile = "", path })
	caller, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/payments/sa/checkout", caller.Identity.String())
	_, err = f.auth(t, signJWT(t, []byte("a symmetric key is ignored"), jose.HS256, "hmac", f.claims(nil)))
	requireFailure(t, err, authn.ReasonUnsupportedAlgorithm)
}

func TestNewJWT_RejectsUnsafeConfiguration(t *testing.T) {
	base := authn.JWTOptions{Issuer: oidcIssuer, Audiences: []string{oidcAudience}, TrustDomain: trustDomain, JWKSURL: "https://idp.example.com/jwks"}
	_, err := authn.NewJWT(base)
	require.NoError(t, err)
	for name, mod := range map[string]func(*authn.JWTOptions){
		"JWKS over plain HTTP to a remote host": func(o *authn.JWTOptions) { o.JWKSURL = "http://idp.example.com/jwks" },
		"no audience":                           func(o *authn.JWTOptions) { o.Audiences = nil },
		"both URL and file":                     func(o *authn.JWTOptions) { o.JWKSFile = "/etc/jwks.json" },
		"HMAC algorithm":                        func(o *authn.JWTOptions) { o.Algorithms = []string{jose.HS256} },
		"bad template":                          func(o *authn.JWTOptions) { o.IdentityTemplate = "{{.Claims" },
	} {
		t.Run(name, func(t *testing.T) {
			o := base
			mod(&o)
			_, err := authn.NewJWT(o)
			require.Error(t, err)
		})
	}
}

func TestJWT_AllowedNamespacesConfineTheIssuer(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) { o.AllowedNamespaces = []string{"payments", "shop"} })
	caller, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/payments/sa/checkout", caller.Identity.String())

	for name, claims := range map[string]map[string]any{
		"istio-system, which the issuer's users may set": {"namespace": "istio-system", "sub": "istiod"},
		"kube-system": {"namespace": "kube-system"},
	} {
		t.Run(name, func(t *testing.T) {
			caller, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(claims)))
			require.Nil(t, caller)
			requireFailure(t, err, authn.ReasonNamespaceNotAllowed)
			require.False(t, authn.IsUnavailable(err))
		})
	}
	t.Run("an identity that is not ns/sa", func(t *testing.T) {
		g := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) {
			o.AllowedNamespaces = []string{"payments"}
			o.IdentityTemplate = "spiffe://{{.TrustDomain}}/idp/{{.Claims.sub}}"
		})
		_, err := g.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", g.claims(nil)))
		requireFailure(t, err, authn.ReasonNamespaceNotAllowed)
	})
	require.Contains(t, f.a.Warning(), "payments,shop")
	open := newJWTAuthenticator(t, p, nil)
	require.Contains(t, open.a.Warning(), "allowedNamespaces")
}

func TestNewJWT_RejectsInvalidAllowedNamespace(t *testing.T) {
	for _, ns := range []string{"", "Payments", "a/b", "ns.with.dots"} {
		_, err := authn.NewJWT(authn.JWTOptions{Issuer: oidcIssuer, Audiences: []string{oidcAudience}, TrustDomain: trustDomain,
			JWKSURL: "https://idp.example.com/jwks", AllowedNamespaces: []string{ns}})
		require.Error(t, err, "namespace %q", ns)
	}
}
