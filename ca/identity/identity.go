// Package identity is meshca's one implementation of SPIFFE IDs. Every place
// that reads an identity — configuration, the issuance policy, the JWT and
// client-certificate authenticators, impersonation and the CLI — parses it
// here, with github.com/spiffe/go-spiffe/v2/spiffeid underneath, so that they
// all apply the same rules of the SPIFFE ID specification (SPIFFE-ID.md):
//
//   - the scheme is exactly "spiffe" (lower case) and the URI has no
//     userinfo, port, query or fragment (§2, §2.1);
//   - the trust domain is non-empty and made of lower-case letters, digits,
//     '.', '-' and '_', at most 255 bytes (§2.1, §2.3);
//   - path segments are non-empty, not "." or "..", and made of letters,
//     digits, '.', '-' and '_'; there is no trailing '/' (§2.2);
//   - the whole ID is at most 2048 bytes (§2.3).
//
// On top of that it knows the two shapes meshca issues: a workload identity
// has a non-root path (X509-SVID.md §3.1 "Leaf certificate SPIFFE IDs MUST
// have a non-root path component"), and Istio's Kubernetes identity is
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
package identity

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Length limits of SPIFFE-ID.md §2.3.
const (
	MaxIDLength          = 2048
	MaxTrustDomainLength = 255
)

// quoteLimit bounds how much of a rejected input an error message echoes.
const quoteLimit = 256

// TrustDomain parses a trust domain name such as cluster.local.
func TrustDomain(name string) (spiffeid.TrustDomain, error) {
	if len(name) > MaxTrustDomainLength {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain %s is %d bytes; the limit is %d (SPIFFE-ID §2.3)", Quote(name), len(name), MaxTrustDomainLength)
	}
	if strings.Contains(name, ":/") {
		// TrustDomainFromString would take a whole SPIFFE ID here.
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain %s must be a bare name such as cluster.local, not a URI", Quote(name))
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain %s is invalid: %v", Quote(name), err)
	}
	return td, nil
}

// Parse parses a SPIFFE ID (with or without a path).
func Parse(s string) (spiffeid.ID, error) {
	if len(s) > MaxIDLength {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID %s is %d bytes; the limit is %d (SPIFFE-ID §2.3)", Quote(s), len(s), MaxIDLength)
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%s is not a SPIFFE ID: %v", Quote(s), err)
	}
	if td := id.TrustDomain().Name(); len(td) > MaxTrustDomainLength {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID %s has a trust domain of %d bytes; the limit is %d (SPIFFE-ID §2.3)", Quote(s), len(td), MaxTrustDomainLength)
	}
	return id, nil
}

// FromURL parses a SPIFFE ID held in a URL (a certificate's or CSR's URI
// SAN). It checks the URL's canonical text, so a query, fragment, port,
// userinfo or percent-escape is refused as it would be in the text form.
func FromURL(u *url.URL) (spiffeid.ID, error) {
	if u == nil {
		return spiffeid.ID{}, fmt.Errorf("no SPIFFE ID")
	}
	return Parse(u.String())
}

// Workload parses the SPIFFE ID of a workload in trust domain td: a valid
// SPIFFE ID of that trust domain with a non-root path.
func Workload(s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	id, err := Parse(s)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return id, CheckWorkload(id, td)
}

// WorkloadURL is Workload for a URL.
func WorkloadURL(u *url.URL, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	id, err := FromURL(u)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return id, CheckWorkload(id, td)
}

// CheckWorkload reports whether id can name a workload of trust domain td.
func CheckWorkload(id spiffeid.ID, td spiffeid.TrustDomain) error {
	switch {
	case !id.MemberOf(td):
		return &ForeignError{ID: id, TrustDomain: td}
	case id.Path() == "":
		return fmt.Errorf("SPIFFE ID %s has no path; a workload's ID needs one (X509-SVID §3.1)", Quote(id.String()))
	}
	return nil
}

// ForeignError is returned for a valid SPIFFE ID of another trust domain.
type ForeignError struct {
	ID          spiffeid.ID
	TrustDomain spiffeid.TrustDomain
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("SPIFFE ID %s is not in trust domain %s", Quote(e.ID.String()), e.TrustDomain)
}

// Kubernetes is Istio's identity of a Kubernetes ServiceAccount:
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
type Kubernetes struct {
	ID             spiffeid.ID
	Namespace      string
	ServiceAccount string
}

// ParseKubernetes parses s as Istio's Kubernetes identity. The namespace
// must be a DNS-1123 label and the service account a DNS-1123 subdomain,
// as Kubernetes names them.
func ParseKubernetes(s string) (Kubernetes, error) {
	id, err := Parse(s)
	if err != nil {
		return Kubernetes{}, err
	}
	k, ok := KubernetesOf(id)
	if !ok {
		return Kubernetes{}, fmt.Errorf("identity %s is not spiffe://<trust domain>/ns/<namespace>/sa/<serviceaccount>", Quote(s))
	}
	return k, nil
}

// KubernetesOf reports whether id is Istio's Kubernetes identity and
// returns its namespace and service account.
func KubernetesOf(id spiffeid.ID) (Kubernetes, bool) {
	p := strings.Split(id.Path(), "/")
	if len(p) != 5 || p[1] != "ns" || p[3] != "sa" ||
		len(validation.IsDNS1123Label(p[2])) > 0 || len(validation.IsDNS1123Subdomain(p[4])) > 0 {
		return Kubernetes{}, false
	}
	return Kubernetes{ID: id, Namespace: p[2], ServiceAccount: p[4]}, true
}

// ForServiceAccount returns the Kubernetes identity of namespace/sa in td.
func ForServiceAccount(td spiffeid.TrustDomain, namespace, sa string) (Kubernetes, error) {
	if td.IsZero() {
		return Kubernetes{}, fmt.Errorf("no trust domain")
	}
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", sa)
	if err != nil {
		return Kubernetes{}, fmt.Errorf("ServiceAccount %s/%s gives no SPIFFE ID: %v", Quote(namespace), Quote(sa), err)
	}
	k, ok := KubernetesOf(id)
	if !ok {
		return Kubernetes{}, fmt.Errorf("%s/%s is not a Kubernetes namespace and ServiceAccount name", Quote(namespace), Quote(sa))
	}
	return k, nil
}

// Quote quotes caller input for an error or log message, cut to a bounded length.
func Quote(s string) string {
	if len(s) > quoteLimit {
		return fmt.Sprintf("%q…", s[:quoteLimit])
	}
	return fmt.Sprintf("%q", s)
}
