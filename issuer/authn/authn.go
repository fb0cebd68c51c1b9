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

// Failure is a failed authentication. Reason is a stable word for metrics;
// the message never contains tokens.
type Failure struct {
	Authenticator string
	Reason        string
	Message       string
}

func (f *Failure) Error() string { return f.Authenticator + ": " + f.Message }

func fail(authn, reason, msg string) *Failure {
	return &Failure{Authenticator: authn, Reason: reason, Message: msg}
}

// Chain tries authenticators in order; the first that succeeds wins.
type Chain []Authenticator

// Authenticate returns the first successful caller. When every
// authenticator fails, the error is the most specific failure (a *Failure
// from an authenticator that had credentials), or a Failure with reason
// "no_credentials".
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
	msgs := make([]string, len(failures))
	for i, f := range failures {
		msgs[i] = f.Error()
	}
	return nil, &Failure{Authenticator: failures[0].Authenticator, Reason: failures[0].Reason, Message: strings.Join(msgs, "; ")}
}

// ReasonOf returns the stable reason of an authentication error.
func ReasonOf(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	return "error"
}
