package istio

import (
	"context"
	"fmt"
	"net/url"

	"google.golang.org/grpc/codes"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/authn"
)

// Stable reasons of CertSigner refusals (audit log).
const (
	// ReasonUnknownCertSigner: the request names a CertSigner that is not
	// configured (InvalidArgument).
	ReasonUnknownCertSigner = "unknown_cert_signer"
	// ReasonCertSignerNotAllowed: the identity may not use the CertSigner
	// it names (PermissionDenied).
	ReasonCertSignerNotAllowed = "cert_signer_not_allowed"
)

// CertSigner is a named signer a request selects with Istio's CertSigner
// metadata (istio-agent's ISTIO_META_CERT_SIGNER). istiod passes the name
// on as the signerName <CERT_SIGNER_DOMAIN>/<name> when it acts as a
// Kubernetes RA (istio.io/istio security/pkg/pki/ra/k8s_ra.go); meshca
// signs itself, with the signer's own profile and policy.
type CertSigner struct {
	// Name is the CertSigner value that selects it.
	Name string
	// Profile is the leaf profile; the CA's profile must be able to issue it.
	Profile profile.Name
	// Policy is the signer's policy engine (its maximum lifetime and
	// exceptions).
	Policy *policy.Engine
	// Identities, when not empty, are the only identities that may use it.
	Identities []identity.Pattern
	// Engine, when set, is the signer's own engine: a signer with its own
	// intermediate (as istiod's per-signer CA) signs with it. Nil: the
	// shared engine (Options.Signer) signs.
	Engine Signer
}

// CertSignersFromConfig builds authentication.certSigners; cfg is validated.
func CertSignersFromConfig(cfg *config.Config) ([]CertSigner, error) {
	var out []CertSigner
	for _, c := range cfg.Authentication.CertSigners {
		pol, err := authority.CertSignerPolicy(cfg, c)
		if err != nil {
			return nil, fmt.Errorf("authentication.certSigners %s: %w", c.Name, err)
		}
		s := CertSigner{Name: c.Name, Profile: c.Profile, Policy: pol}
		for _, p := range c.Identities {
			pat, err := identity.ParsePattern(p)
			if err != nil {
				return nil, fmt.Errorf("authentication.certSigners %s: %w", c.Name, err)
			}
			s.Identities = append(s.Identities, pat)
		}
		out = append(out, s)
	}
	return out, nil
}

// allows reports whether id may use the signer.
func (s *CertSigner) allows(id *url.URL) bool {
	if len(s.Identities) == 0 {
		return true
	}
	sid, err := identity.FromURL(id)
	if err != nil {
		return false
	}
	for _, p := range s.Identities {
		if p.Matches(sid) {
			return true
		}
	}
	return false
}

// certSigners indexes the configured signers; nil when none is configured,
// and CertSigner is then ignored as before it was honoured.
type certSigners map[string]*CertSigner

func newCertSigners(list []CertSigner) certSigners {
	if len(list) == 0 {
		return nil
	}
	m := make(certSigners, len(list))
	for i := range list {
		m[list[i].Name] = &list[i]
	}
	return m
}

// selectSigner resolves the request's CertSigner after authentication and
// before anything else reads the request: "" is the default signer (nil),
// a configured name its signer, and any other name is refused with
// InvalidArgument: the name does not exist for any caller, which is what
// InvalidArgument means ("arguments that are problematic regardless of the
// state of the system", grpc/grpc doc/statuscodes.md). Istio's clients
// retry neither it nor PermissionDenied (istio.io/istio pkg/security/retry.go
// retries Canceled, DeadlineExceeded, ResourceExhausted, Aborted, Internal
// and Unavailable only), so the choice changes no client's behaviour.
// label is the metrics' signer label.
func (s *Service) selectSigner(ctx context.Context, req *pb.IstioCertificateRequest, caller *authn.Caller) (signer *CertSigner, label string, err error) {
	name := metaString(req, MetaCertSigner)
	if name == "" {
		return nil, config.CertSignerDefaultLabel, nil
	}
	if signer = s.signers[name]; signer == nil {
		return nil, config.CertSignerUnknownLabel, s.deny(ctx, caller, codes.InvalidArgument, ReasonUnknownCertSigner,
			"CertSigner "+identity.Quote(name)+" is not configured at this CA; unset ISTIO_META_CERT_SIGNER for the default signer or use a configured one")
	}
	return signer, signer.Name, nil
}

// authorizeSigner refuses an identity the signer does not serve.
func (s *Service) authorizeSigner(ctx context.Context, signer *CertSigner, caller *authn.Caller, id *url.URL, idString string) error {
	if signer == nil || signer.allows(id) {
		return nil
	}
	return s.deny(ctx, caller, codes.PermissionDenied, ReasonCertSignerNotAllowed,
		"CertSigner "+identity.Quote(signer.Name)+" does not issue for "+idString)
}
