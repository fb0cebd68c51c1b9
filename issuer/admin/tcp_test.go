package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/authn"
)

// certAuthn accepts any client certificate and names it by its first URI:
// the real verification is issuer/authn's, tested there and end to end.
type certAuthn struct{}

func (certAuthn) Name() string { return authn.ClientCertificate }
func (certAuthn) Authenticate(_ context.Context, c authn.Credentials) (*authn.Caller, error) {
	return &authn.Caller{Identity: c.PeerCertificates[0].URIs[0]}, nil
}

// tokenAuthn maps a token to a user; "down" is an outage.
type tokenAuthn struct{}

func (tokenAuthn) Name() string { return authn.TokenReview }
func (tokenAuthn) Authenticate(_ context.Context, c authn.Credentials) (*authn.Caller, error) {
	switch c.BearerToken {
	case "down":
		return nil, &authn.Failure{Authenticator: authn.TokenReview, Reason: authn.ReasonReviewFailed, Message: "apiserver unreachable", Err: authn.ErrUnavailable}
	case "bad":
		return nil, &authn.Failure{Authenticator: authn.TokenReview, Reason: authn.ReasonUnauthenticatedToken, Message: "not authenticated"}
	}
	return &authn.Caller{User: &authenticationv1.UserInfo{Username: c.BearerToken}}, nil
}

// access allows "root" everything, "reader" get/list, and cannot be asked
// about "sar-down".
type access struct{}

func (access) Allowed(_ context.Context, c *authn.Caller, act Action) (bool, string, error) {
	switch c.User.Username {
	case "root":
		return true, "", nil
	case "reader":
		return act.Verb == "get" || act.Verb == "list", "", nil
	case "sar-down":
		return false, "", errors.New("connection refused")
	}
	return false, "no RBAC policy matched", nil
}

func selfSigned(t *testing.T, uri string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	if server {
		tmpl.DNSNames = []string{"localhost"}
	} else {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// cliIssued is the issuance records of certs, signed with 'meshca sign'.
func cliIssued(certs ...tls.Certificate) *records {
	r := &records{}
	for _, c := range certs {
		r.recs = append(r.recs, store.Issuance{Serial: hex.EncodeToString(c.Leaf.SerialNumber.Bytes()), Identity: c.Leaf.URIs[0].String(), Requester: "cli:ops"})
	}
	return r
}

func TestRemote_AuthenticatesThenAuthorizesEveryRoute(t *testing.T) {
	srvCert := selfSigned(t, "", true)
	alice, bob := selfSigned(t, "spiffe://cluster.local/ns/ops/sa/alice", false), selfSigned(t, "spiffe://cluster.local/ns/ops/sa/bob", false)
	rv := &memRevoker{}
	var logs syncBuffer
	s := serveRemote(t, srvCert, Options{Revoker: rv, Revocations: rv, Records: cliIssued(alice, bob), Log: slog.New(slog.NewJSONHandler(&logs, nil))}, []string{"h2"})

	roots := x509.NewCertPool()
	roots.AddCert(srvCert.Leaf)
	// One client at a time: every caller here comes from 127.0.0.1, which
	// holds at most maxConnsPerAddress connections.
	var prev *Client
	client := func(cert *tls.Certificate, token string) *Client {
		if prev != nil {
			prev.Close()
		}
		tc := &tls.Config{RootCAs: roots, ServerName: "localhost"}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := NewRemoteClient(s.Path(), tc, token)
		t.Cleanup(func() { c.Close() })
		prev = c
		return c
	}
	bg := context.Background()
	revoke := RevokeBody{Serial: "0a", Reason: "keyCompromise"}
	code := func(err error) int {
		if err == nil {
			return http.StatusOK
		}
		se, ok := errors.AsType[*StatusError](err)
		require.True(t, ok, "%v", err)
		return se.Code
	}

	recs, err := client(&alice, "").Revoke(bg, revoke)
	require.NoError(t, err)
	require.Equal(t, "admin:spiffe://cluster.local/ns/ops/sa/alice", recs[0].Requester, "the requester is the authenticated admin")
	_, err = client(&bob, "").Status(bg)
	require.Equal(t, &StatusError{Code: 403, Message: "spiffe://cluster.local/ns/ops/sa/bob is not an admin identity of this meshca (server.adminIdentities)"}, err)

	_, err = client(nil, "root").Revoke(bg, RevokeBody{Serial: "0b", Reason: "1"})
	require.NoError(t, err)
	_, err = client(nil, "reader").Status(bg)
	require.NoError(t, err)
	_, err = client(nil, "reader").Revoke(bg, revoke)
	require.Equal(t, &StatusError{Code: 403, Message: `user "reader" may not revoke revocations.meshca.io (Kubernetes RBAC)`}, err)
	_, err = client(nil, "mallory").CRLs(bg)
	require.Equal(t, &StatusError{Code: 403, Message: `user "mallory" may not list crls.meshca.io (Kubernetes RBAC): no RBAC policy matched`}, err)
	_, err = client(nil, "sar-down").Status(bg)
	require.Equal(t, 503, code(err))
	_, err = client(nil, "down").Status(bg)
	require.Equal(t, 503, code(err))
	_, err = client(nil, "bad").Status(bg)
	require.Equal(t, &StatusError{Code: 401, Message: "token_review: not authenticated"}, err)
	_, err = client(nil, "").Status(bg)
	require.Equal(t, &StatusError{Code: 401, Message: "present an admin client certificate issued by this meshca, or a Kubernetes bearer token"}, err)
	require.Equal(t, 2, rv.calls, "refused callers never reach the revoker")

	// Sign is local only.
	resp, err := client(&alice, "").send(bg, http.MethodPost, pathSign, []byte(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	out := logs.String()
	for _, want := range []string{
		`"event":"admin.call","action":"revoke revocations","route":"POST /v1/revocations","requester":"admin:spiffe://cluster.local/ns/ops/sa/alice","code":200`,
		`"event":"admin.denied","action":"get status","route":"GET /v1/status","requester":"admin:spiffe://cluster.local/ns/ops/sa/bob","code":403,"reason":"not_an_admin","message":"spiffe://cluster.local/ns/ops/sa/bob is not an admin identity of this meshca (server.adminIdentities)","suppressed":0}`,
		`"event":"admin.denied","action":"revoke revocations","route":"POST /v1/revocations","requester":"k8s:reader","code":403,"reason":"rbac_denied"`,
		`"event":"admin.denied","action":"get status","route":"GET /v1/status","requester":"k8s:sar-down","code":503,"reason":"access_review_failed"`,
		`"event":"admin.denied","action":"get status","route":"GET /v1/status","requester":"","code":401,"reason":"no_credentials"`,
	} {
		require.Contains(t, out, want)
	}
	require.False(t, strings.Contains(out, `"bad"`) || strings.Contains(out, "Bearer"), "tokens never reach the log")
}
