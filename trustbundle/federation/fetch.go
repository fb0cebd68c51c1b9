package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshca/meshca/ca/identity"
)

// Outcomes of a fetch, the values of meshca_federation_fetch_total's
// outcome label.
const (
	OutcomeUpdated   = "updated"   // a new bundle was accepted
	OutcomeUnchanged = "unchanged" // the endpoint served the bundle meshca already had
	OutcomeError     = "error"     // the endpoint could not be reached or authenticated, or answered non-200
	OutcomeTooLarge  = "too_large" // the response was over the size limit
	OutcomeInvalid   = "invalid"   // the response was not a usable SPIFFE bundle
	OutcomeForeign   = "wrong_trust_domain"
)

// fetchError is a refused fetch with its outcome label.
type fetchError struct {
	outcome string
	err     error
}

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

func refuse(outcome, format string, args ...any) error {
	return &fetchError{outcome: outcome, err: fmt.Errorf(format, args...)}
}

// outcomeOf is err's outcome label.
func outcomeOf(err error) string {
	if fe, ok := errors.AsType[*fetchError](err); ok {
		return fe.outcome
	}
	return OutcomeError
}

// tlsConfig is the client TLS configuration of one fetch: for https_web the
// system roots plus caFile's, checking the host name (SPIFFE Trust Domain
// and Bundle §5.2.1); for https_spiffe go-spiffe's SPIFFE authentication (the same
// configuration as federation.WithSPIFFEAuth) against the last bundle of
// the trust domain, pinning the endpoint's SPIFFE ID (§5.2.2).
func (t *domain) tlsConfig(last *spiffebundle.Bundle) (*tls.Config, error) {
	if t.endpointID.IsZero() {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, c := range t.extraRoots {
			pool.AddCert(c)
		}
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
	}
	auth := t.bootstrap
	if last != nil {
		auth = last.X509Bundle()
	}
	if auth == nil || len(auth.X509Authorities()) == 0 {
		return nil, refuse(OutcomeError, "no roots of %s to authenticate %s with", t.td, t.endpointID)
	}
	return tlsconfig.TLSClientConfig(auth, tlsconfig.AuthorizeID(t.endpointID)), nil
}

// fetch GETs the bundle endpoint once, bounded in time (timeout) and size
// (maxBytes), without following redirects, and parses the answer as a
// SPIFFE bundle of t's trust domain (SPIFFE Trust Domain and Bundle §4).
// go-spiffe's federation.FetchBundle reads an unbounded body and does not
// look at the status, so the request is made here and the parsing and TLS
// policy are go-spiffe's.
func (t *domain) fetch(ctx context.Context, last *spiffebundle.Bundle, now time.Time, timeout time.Duration, maxBytes int64) (*spiffebundle.Bundle, error) {
	tc, err := t.tlsConfig(last)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: timeout}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            dialer.DialContext,
			TLSClientConfig:        tc,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 64 << 10,
			DisableKeepAlives:      true,
		},
		Timeout: timeout,
		// A redirect would leave the authenticated endpoint.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, http.NoBody)
	if err != nil {
		return nil, refuse(OutcomeError, "bundle endpoint %s: %v", t.url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, refuse(OutcomeError, "fetching the bundle of %s: %v", t.td, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, refuse(OutcomeError, "fetching the bundle of %s: the endpoint answered %s", t.td, resp.Status)
	}
	if resp.ContentLength > maxBytes {
		return nil, refuse(OutcomeTooLarge, "the bundle of %s is %d bytes, over the %d-byte limit", t.td, resp.ContentLength, maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, refuse(OutcomeError, "reading the bundle of %s: %v", t.td, err)
	}
	if int64(len(body)) > maxBytes {
		return nil, refuse(OutcomeTooLarge, "the bundle of %s is over the %d-byte limit", t.td, maxBytes)
	}
	b, err := spiffebundle.Parse(t.td, body)
	if err != nil {
		return nil, refuse(OutcomeInvalid, "the bundle of %s is not a SPIFFE bundle: %v", t.td, err)
	}
	if err := checkAuthorities(t.td, b.X509Authorities(), now); err != nil {
		return nil, err
	}
	return b, nil
}

// checkAuthorities accepts X.509 authorities that Istio and a
// ClusterTrustBundle can use: at least one, each a CA certificate, none
// naming another trust domain, and at least one valid at now. A signing
// certificate may carry its trust domain's SPIFFE ID as a URI SAN
// (X509-SVID §3.2); one that names another trust domain means the endpoint
// served another trust domain's bundle. An expired authority next to a
// valid one is kept (a rotation overlap), but a bundle with none valid
// (say, an endpoint restored from an old backup) verifies no SVID
// (RFC 5280 §6.1.3 (a)(2)) and would replace working trust with none.
func checkAuthorities(td spiffeid.TrustDomain, certs []*x509.Certificate, now time.Time) error {
	if len(certs) == 0 {
		return refuse(OutcomeInvalid, "the bundle of %s has no X.509 authorities (x509-svid keys); there is nothing to trust", td)
	}
	valid := 0
	for i, c := range certs {
		if !now.Before(c.NotBefore) && !now.After(c.NotAfter) {
			valid++
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return refuse(OutcomeInvalid, "X.509 authority %d of %s (%s) is not a CA certificate", i+1, td, c.Subject)
		}
		for _, u := range c.URIs {
			id, err := identity.FromURL(u)
			if err != nil || id.TrustDomain() != td {
				return refuse(OutcomeForeign, "X.509 authority %d of the bundle fetched for %s names %s: the endpoint served another trust domain's bundle", i+1, td, identity.Quote(u.String()))
			}
		}
	}
	if valid == 0 {
		return refuse(OutcomeInvalid, "none of the %d X.509 authorities of %s is valid at %s (all expired or not yet valid); there is nothing usable to trust",
			len(certs), td, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// sameX509 reports whether a and b hold the same X.509 authorities.
func sameX509(a, b *spiffebundle.Bundle) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.X509Bundle().Equal(b.X509Bundle())
}

// bootstrapBundle is the https_spiffe bootstrap roots as an x509bundle.
func bootstrapBundle(td spiffeid.TrustDomain, certs []*x509.Certificate) *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(td, certs)
}
