// Package authn owns how meshca's front doors learn who is calling: the
// authenticators (client certificate, OIDC/JWKS JWT, Kubernetes TokenReview)
// and the chain that tries them in istiod's order. It turns credentials into
// a Caller; it never parses CSRs and never decides what a caller may get.
package authn

import (
	"context"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// Authenticator names, used in metrics and the audit log.
const (
	ClientCertificate = "client_certificate"
	JWT               = "jwt"
	TokenReview       = "token_review"
)

// Credentials are what a request carries, extracted by the transport.
type Credentials struct {
	// PeerCertificates is the client's TLS chain, leaf first, unverified.
	PeerCertificates []*x509.Certificate
	// BearerToken is the token from "authorization: Bearer <token>", if any.
	BearerToken string
	// ClusterID is the "clusterid" header (empty means the local cluster).
	ClusterID string
	// PeerAddr is the caller's IP address (no port), from the transport;
	// it bounds the work one address can cause. Never a metric label.
	PeerAddr string
}

// Caller is an authenticated caller.
type Caller struct {
	// Identity is the caller's SPIFFE ID.
	Identity *url.URL
	// Authenticator is the name of the authenticator that succeeded.
	Authenticator string
	// Cluster is the cluster whose apiserver vouched for a token.
	Cluster string
	// Namespace, ServiceAccount, PodName and PodUID are known for
	// Kubernetes-authenticated callers.
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         string
	// User is the apiserver's account of a token's user (name, UID,
	// groups, extra), exactly as its TokenReview returned it; nil for the
	// other authenticators. A SubjectAccessReview names this user.
	User *authenticationv1.UserInfo
}

// String describes the caller for logs and records.
func (c *Caller) String() string {
	s := c.Authenticator + ":" + c.Identity.String()
	if c.Cluster != "" {
		s += "@" + c.Cluster
	}
	return s
}

// Authenticator turns credentials into a caller. It returns ErrNoCredentials
// when the request carries nothing it understands, so that the chain tries
// the next one; any other error is a failed authentication with a reason.
type Authenticator interface {
	Name() string
	Authenticate(ctx context.Context, creds Credentials) (*Caller, error)
}

// ErrNoCredentials means the authenticator found nothing to check.
var ErrNoCredentials = errors.New("no credentials for this authenticator")

// ErrUnavailable marks a failure that is not the caller's fault: the party
// that vouches for a credential (a cluster's apiserver, an OIDC issuer's
// JWKS endpoint) could not be asked. Test with IsUnavailable; the transport
// answers it with Unavailable so that clients retry, never Unauthenticated.
var ErrUnavailable = errors.New("authentication backend unavailable")

// IsUnavailable reports whether err (from an Authenticator or a Chain) is a
// backend outage rather than a bad credential.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// Failure is a failed authentication. Reason is a stable word for metrics;
// the message never contains tokens.
type Failure struct {
	Authenticator string
	Reason        string
	Message       string
	// Err is an optional cause; ErrUnavailable marks a backend outage.
	Err error

	// named: Message already names its authenticators (a Chain's failure).
	named bool
}

func (f *Failure) Error() string {
	if f.named {
		return f.Message
	}
	return f.Authenticator + ": " + f.Message
}

// Unwrap returns the cause, so that errors.Is(err, ErrUnavailable) works.
func (f *Failure) Unwrap() error { return f.Err }

func fail(authn, reason, msg string) *Failure {
	return &Failure{Authenticator: authn, Reason: reason, Message: msg}
}

// Chain tries authenticators in order; the first that succeeds wins.
type Chain []Authenticator

// Authenticate returns the first successful caller. When every
// authenticator fails, the error is the most specific failure (a *Failure
// from an authenticator that had credentials), or a Failure with reason
// "no_credentials". When any authenticator could not reach its backend the
// result carries that failure's reason and IsUnavailable reports true: the
// credential might be good, so the client should retry.
func (c Chain) Authenticate(ctx context.Context, creds Credentials) (*Caller, error) {
	var failures []*Failure
	for _, a := range c {
		caller, err := a.Authenticate(ctx, creds)
		if err == nil {
			caller.Authenticator = a.Name()
			return caller, nil
		}
		var f *Failure
		switch {
		case errors.Is(err, ErrNoCredentials):
		case errors.As(err, &f):
			failures = append(failures, f)
		default:
			failures = append(failures, fail(a.Name(), "error", err.Error()))
		}
	}
	if len(failures) == 0 {
		return nil, fail("chain", "no_credentials", "the request carries no client certificate and no bearer token")
	}
	first := failures[0]
	msgs := make([]string, len(failures))
	for i, f := range failures {
		msgs[i] = f.Error()
		if errors.Is(f, ErrUnavailable) && !errors.Is(first, ErrUnavailable) {
			first = f
		}
	}
	return nil, &Failure{Authenticator: first.Authenticator, Reason: first.Reason, Message: strings.Join(msgs, "; "), Err: first.Err, named: true}
}

// ReasonOf returns the stable reason of an authentication error.
func ReasonOf(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	return "error"
}
