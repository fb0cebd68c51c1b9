package rotation

import (
	"context"

	"github.com/meshca/meshca/ca/authority"
)

// Change is what the CA publishes after the signing intermediate or the
// set of roots changed. Everything that hands out or checks CA material
// (the Istio endpoint's chain, the client-certificate authenticator, the
// serving certificate, the trust publisher and cacerts, the CRL issuers)
// moves to it together.
type Change struct {
	// Active is the material meshca signs with from now on; its
	// Bundle.Roots are every root in force (one, or two during a root
	// rotation).
	Active *authority.Material
	// Retained are retired generations that are still published: their
	// last leaf has not expired plus intermediate.gracePeriod. Their CRLs
	// stay served (RFC 5280 section 5: a CRL covers the certificates its
	// issuer issued until they expire). Oldest first.
	Retained []*authority.Material
	// Reason says why: ReasonActivated, ReasonRoots or ReasonRetired.
	Reason string
}

// Reasons for a Change.
const (
	// ReasonActivated: a new intermediate generation became active.
	ReasonActivated = "activated"
	// ReasonRoots: the roots in force changed (root rotation), the
	// intermediate did not.
	ReasonRoots = "roots"
	// ReasonRetired: a retired generation's grace period ended and it is
	// no longer published.
	ReasonRetired = "retired"
)

// Subscriber applies a Change. It is called synchronously, in the order
// subscribed, after the change is durable in the store; an error is
// logged, counted and retried by the caller with backoff, and never
// undoes the change.
type Subscriber func(ctx context.Context, c Change) error
