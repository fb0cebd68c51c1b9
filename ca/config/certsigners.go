package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/profile"
)

// Reserved CertSigner names: the metric label values of the default signer
// (a request whose CertSigner is "") and of a name that is not configured.
const (
	CertSignerDefaultLabel = "default"
	CertSignerUnknownLabel = "unknown"
)

// CertSignerConfig is one named signer of the Istio endpoint, selected by
// the CertSigner metadata istio-agent sends (its ISTIO_META_CERT_SIGNER; the
// same name istiod, as a Kubernetes RA, appends to CERT_SIGNER_DOMAIN to
// form a CSR signerName, and that meshConfig.caCertificates[].certSigners
// lists). A request naming it is issued with the signer's profile, maximum
// lifetime and policies instead of the default ones.
type CertSignerConfig struct {
	// Name is the value of the CertSigner metadata: the path of a
	// Kubernetes signerName (a DNS-1123 subdomain, e.g. "istio-system" or
	// "gateways"). "default" and "unknown" are reserved.
	Name string `json:"name"`
	// Profile is the signer's leaf profile; it must be one the
	// intermediate's profile can issue. Default: issuance.profile.
	Profile profile.Name `json:"profile,omitempty"`
	// MaxCertTTL is the longest lifetime the signer issues (a request above
	// it is refused, as by issuance.maxCertTTL). Default: issuance.maxCertTTL.
	// The default lifetime is issuance.defaultCertTTL, lowered to it.
	MaxCertTTL Duration `json:"maxCertTTL,omitzero"`
	// Identities, when set, are the only SPIFFE ID patterns that may use the
	// signer (others: PermissionDenied). Empty: every mesh identity.
	Identities []string `json:"identities,omitempty"`
	// Policies are the signer's named exceptions (e.g. DNS names for
	// gateways). They replace issuance.policies for requests to this
	// signer: an exception applies through a signer only if listed here.
	Policies []PolicyConfig `json:"policies,omitempty"`
}

func (c *Config) initCertSigners() {
	for n := range c.Authentication.CertSigners {
		s := &c.Authentication.CertSigners[n]
		if s.Profile == "" {
			s.Profile = c.Issuance.Profile
		}
		if s.MaxCertTTL.Duration == 0 {
			s.MaxCertTTL.Duration = c.Issuance.MaxCertTTL.Duration
		}
	}
}

func (c *Config) validateCertSigners(td spiffeid.TrustDomain, add func(string, string, ...any)) {
	seen := map[string]bool{}
	for n, s := range c.Authentication.CertSigners {
		key := fmt.Sprintf("authentication.certSigners[%d]", n)
		switch {
		case s.Name == "":
			add(key+".name", "must be set: the CertSigner value istio-agent sends (ISTIO_META_CERT_SIGNER); requests with an empty CertSigner get the default signer")
		case s.Name == CertSignerDefaultLabel || s.Name == CertSignerUnknownLabel:
			add(key+".name", "%q is reserved (it labels the default signer's and unknown signers' metrics); choose another name", s.Name)
		case seen[s.Name]:
			add(key+".name", "%q is used twice", s.Name)
		default:
			if errs := validation.IsDNS1123Subdomain(s.Name); len(errs) > 0 {
				add(key+".name", "%s is not the path of a Kubernetes signerName (a DNS-1123 subdomain such as istio-system): %s", identity.Quote(s.Name), strings.Join(errs, "; "))
			}
		}
		seen[s.Name] = true
		if !s.Profile.Valid() {
			add(key+".profile", "%q is not supported; use one of %v", s.Profile, c.Intermediate.Profile.Leaves())
		} else if c.Intermediate.Profile.Valid() {
			if err := c.Intermediate.Profile.CheckLeaf(s.Profile); err != nil {
				add(key+".profile", "%v; use one of %v or change intermediate.profile", err, c.Intermediate.Profile.Leaves())
			}
		}
		if s.MaxCertTTL.Duration < time.Minute {
			add(key+".maxCertTTL", "%s is too short; use at least 1m (default issuance.maxCertTTL)", s.MaxCertTTL.Duration)
		}
		if len(s.Identities) == 0 && s.MaxCertTTL.Duration > c.Issuance.MaxCertTTL.Duration {
			// Any workload chooses its CertSigner (istio-agent's
			// ISTIO_META_CERT_SIGNER): a signer that widens the lifetime must
			// say who may use it.
			add(key+".identities", "must be set when maxCertTTL (%s) is above issuance.maxCertTTL (%s): any workload can name the signer (ISTIO_META_CERT_SIGNER), so list the SPIFFE ID patterns that may get its longer certificates (e.g. %q)",
				s.MaxCertTTL.Duration, c.Issuance.MaxCertTTL.Duration, "spiffe://"+td.Name()+"/ns/istio-system/sa/*")
		}
		validateIdentityPatterns(key+".identities", td, s.Identities, add)
		validatePolicies(key+".policies", td, s.Policies, add)
	}
}
