package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.step.sm/crypto/jose"

	"github.com/meshca/meshca/issuer/authn"
)

// A caller that cancels its request must not burn the issuer's JWKS load
// slot (MinRefreshInterval): anyone can send a token with the public iss.
func TestJWT_CancelledCallerDoesNotBlockKeyLoading(t *testing.T) {
	p := newIDP(t)
	f := newJWTAuthenticator(t, p, nil)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = f.a.Authenticate(cancelled, authn.Credentials{BearerToken: signJWT(t, attacker, jose.ES256, "ec-1", f.claims(nil))})
	require.Error(t, err, "the cancelled caller gets no answer")

	// Within MinRefreshInterval (the fake clock has not moved) a valid
	// token authenticates.
	caller, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/payments/sa/checkout", caller.Identity.String())
	require.EqualValues(t, 1, p.fetches.Load(), "one fetch, started by the cancelled caller, served both")
}

// Callers waiting for a slow JWKS fetch share it, and one whose context
// ends stops waiting at once instead of queueing behind the fetch.
func TestJWT_ConcurrentCallersShareOneFetchAndWaitersCanGiveUp(t *testing.T) {
	release := make(chan struct{})
	var keys jose.JSONWebKeySet
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	keys.Keys = []jose.JSONWebKey{{Key: key.Public(), KeyID: "ec-1", Algorithm: jose.ES256, Use: "sig"}}
	p := newIDP(t)
	p.set(http.StatusOK, keys.Keys...)
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		p.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	f := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) { o.JWKSURL, o.HTTPClient = slow.URL+"/jwks", slow.Client() })
	tok := signJWT(t, key, jose.ES256, "ec-1", f.claims(nil))

	results := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := f.a.Authenticate(context.Background(), authn.Credentials{BearerToken: tok})
			results <- err
		}()
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	gaveUp := make(chan error, 1)
	go func() {
		_, err := f.a.Authenticate(short, authn.Credentials{BearerToken: tok})
		gaveUp <- err
	}()
	select {
	case err := <-gaveUp:
		requireFailure(t, err, authn.ReasonJWKSUnavailable)
		require.True(t, authn.IsUnavailable(err))
	case <-time.After(10 * time.Second):
		t.Fatal("a caller whose context ended kept waiting behind the JWKS fetch")
	}
	close(release)
	for range 8 {
		require.NoError(t, <-results)
	}
	require.EqualValues(t, 1, p.fetches.Load(), "concurrent callers shared one fetch")
}

func TestJWT_OversizedJWKSIsRefused(t *testing.T) {
	p := newIDP(t)
	big := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("a", 2<<20) + `"}`))
	}))
	t.Cleanup(big.Close)
	f := newJWTAuthenticator(t, p, func(o *authn.JWTOptions) { o.JWKSURL, o.HTTPClient = big.URL+"/jwks", big.Client() })
	_, err := f.auth(t, signJWT(t, p.ec, jose.ES256, "ec-1", f.claims(nil)))
	f2 := requireFailure(t, err, authn.ReasonJWKSUnavailable)
	require.Contains(t, f2.Message, "larger than")
}
