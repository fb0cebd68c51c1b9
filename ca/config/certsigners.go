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
	// Intermediate, with separate set, gives the signer an intermediate CA
	// of its own under the same root, as istiod's per-signer CAs (its
	// ISTIOD_CUSTOM_CA_CERT_NAME): its leaves chain to it, it rotates on
	// its own schedule (the intermediate section's lifetime and
	// thresholds), has its own CRL, and revoking or rotating it leaves the
	// default intermediate alone. Default: the shared intermediate signs.
	Intermediate CertSignerIntermediateConfig `json:"intermediate,omitzero"`
}

// CertSignerIntermediateConfig is a named signer's own intermediate.
type CertSignerIntermediateConfig struct {
	// Separate gives the signer its own intermediate.
	Separate bool `json:"separate,omitempty"`
	// CommonName is the subject CN of the signer's intermediate; it must
	// differ from every other intermediate's, so that a CRL's issuer names
	// one CA (RFC 5280 section 5.1.2.3). Default:
	// "<intermediate.commonName> signer <name>".
	CommonName string `json:"commonName,omitempty"`
}

// SeparateIntermediate returns the intermediate section a signer with its
// own intermediate mints under: the shared one (profile, key algorithm,
// lifetime, thresholds) with the signer's subject. ok is false for a
// signer that uses the shared intermediate.
func (c *Config) SeparateIntermediate(s CertSignerConfig) (ic IntermediateConfig, ok bool) {
	if !s.Intermediate.Separate {
		return IntermediateConfig{}, false
	}
	ic = c.Intermediate
	ic.CommonName = s.Intermediate.CommonName
	return ic, true
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
		if s.Intermediate.Separate && s.Intermediate.CommonName == "" {
			s.Intermediate.CommonName = c.Intermediate.CommonName + " signer " + s.Name
		}
	}
}

func (c *Config) validateCertSigners(td spiffeid.TrustDomain, add func(string, string, ...any)) {
	seen := map[string]bool{}
	cns := map[string]string{c.Intermediate.CommonName: "intermediate.commonName"}
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
		c.validateSeparateIntermediate(key+".intermediate", s, cns, add)
	}
}

// Limits of a signer with its own intermediate.
const (
	maxSeparateSignerName = 63
	maxCommonName         = 64 // RFC 5280 appendix A.1, ub-common-name
)

// validateSeparateIntermediate checks a signer's own intermediate: meshca
// must be able to mint it, and its subject must be its own.
func (c *Config) validateSeparateIntermediate(key string, s CertSignerConfig, cns map[string]string, add func(string, string, ...any)) {
	si := s.Intermediate
	switch {
	case !si.Separate:
		if si.CommonName != "" {
			add(key+".commonName", "is set but separate is not: set separate: true to give the signer its own intermediate, or remove commonName")
		}
		return
	case c.Root.Source != RootSourceVault && !c.Root.File.Minted():
		add(key+".separate", "needs a root meshca can mint intermediates from (root.file.rootCert and rootKey, or root.source vault); with root.file.cacertsDir the one pre-issued intermediate signs for every signer")
	case len(s.Name) > maxSeparateSignerName:
		// The name is part of its key names in the key store.
		add(key+".separate", "needs a signer name of at most %d characters (it names the intermediate's keys); %q has %d", maxSeparateSignerName, s.Name, len(s.Name))
	}
	if n := len(si.CommonName); n > maxCommonName {
		add(key+".commonName", "%s has %d characters; a common name has at most %d (RFC 5280 ub-common-name): set a shorter one", identity.Quote(si.CommonName), n, maxCommonName)
	}
	if other, ok := cns[si.CommonName]; ok {
		add(key+".commonName", "%s is already the common name of %s; each intermediate needs its own subject so that its CRLs name one issuer (RFC 5280 section 5.1.2.3)", identity.Quote(si.CommonName), other)
	}
	cns[si.CommonName] = key + ".commonName"
}
