package authn

import (
	"net/url"

	"github.com/meshca/meshca/ca/identity"
)

// serviceAccountIdentity is Istio's identity of a Kubernetes ServiceAccount,
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>, built by the
// one SPIFFE ID implementation (ca/identity).
func serviceAccountIdentity(trustDomain, ns, sa string) (*url.URL, *Failure) {
	td, err := identity.TrustDomain(trustDomain)
	if err != nil {
		return nil, fail(TokenReview, ReasonNotAServiceAccount, err.Error())
	}
	k, err := identity.ForServiceAccount(td, ns, sa)
	if err != nil {
		return nil, fail(TokenReview, ReasonNotAServiceAccount, err.Error())
	}
	return k.ID.URL(), nil
}
