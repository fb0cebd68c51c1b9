package config

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshca/meshca/ca/profile"
)

// serviceAccountUser is the prefix of a ServiceAccount's username
// (Kubernetes authentication docs, "Service account tokens").
const serviceAccountUser = "system:serviceaccount:"

// CSRSignerConfig configures the CertificateSigningRequest (certificates.k8s.io/v1) signer for istiod as an RA.
//
// istiod (EXTERNAL_CA=ISTIOD_RA_KUBERNETES_API, K8S_SIGNER=<one of
// SignerNames>) creates a CSR for each workload and approves it itself, so
// Approved proves nothing about an operator: AllowedRequesters is the gate.
type CSRSignerConfig struct {
	// Enabled runs it (default off).
	Enabled bool `json:"enabled,omitempty"`
	// SignerNames are the spec.signerName values meshca signs (istiod's
	// K8S_SIGNER, or <CERT_SIGNER_DOMAIN>/<signer>). Required.
	SignerNames []string `json:"signerNames,omitempty"`
	// AllowedRequesters are the exact spec.username values that may get a
	// certificate: istiod's ServiceAccount user, e.g.
	// system:serviceaccount:istio-system:istiod. Groups are deliberately
	// not accepted: every ServiceAccount of a namespace is in its
	// system:serviceaccounts:<namespace> group. Required.
	AllowedRequesters []string `json:"allowedRequesters,omitempty"`
	// MaxDuration caps spec.expirationSeconds (default issuance.maxCertTTL);
	// the issuance policy's maximum applies as well.
	MaxDuration Duration `json:"maxDuration,omitzero"`
	// Profile of the certificates (default issuance.profile).
	Profile profile.Name `json:"profile,omitempty"`
}

func (s *CSRSignerConfig) init(c *Config) {
	if s.MaxDuration.Duration == 0 {
		s.MaxDuration.Duration = c.Issuance.MaxCertTTL.Duration
	}
	if s.Profile == "" {
		s.Profile = c.Issuance.Profile
	}
}

func (s *CSRSignerConfig) validate(c *Config, add func(string, string, ...any)) {
	if !s.Enabled {
		return
	}
	const key = "signers.csr"
	if len(s.SignerNames) == 0 {
		add(key+".signerNames", "must list the signer names meshca signs for: istiod's K8S_SIGNER, e.g. [%s]", DefaultWorkloadSigner)
	}
	seen := map[string]bool{}
	for i, n := range s.SignerNames {
		k := fmt.Sprintf("%s.signerNames[%d]", key, i)
		if err := ValidateKubernetesSignerName(n); err != nil {
			add(k, "%v", err)
		}
		if seen[n] {
			add(k, "%q is listed twice", n)
		}
		seen[n] = true
	}
	if len(s.AllowedRequesters) == 0 {
		add(key+".allowedRequesters", "must list the users that may request certificates (spec.username, exact match): istiod's ServiceAccount, e.g. [system:serviceaccount:istio-system:istiod]; istiod approves its own CSRs, so approval alone proves nothing")
	}
	for i, u := range s.AllowedRequesters {
		if msg := requesterProblem(u); msg != "" {
			add(fmt.Sprintf("%s.allowedRequesters[%d]", key, i), "%s", msg)
		}
	}
	if s.MaxDuration.Duration < 0 {
		add(key+".maxDuration", "must not be negative (default issuance.maxCertTTL, %s)", c.Issuance.MaxCertTTL.Duration)
	}
	if c.Intermediate.Profile.Valid() {
		if err := c.Intermediate.Profile.CheckLeaf(s.Profile); err != nil {
			add(key+".profile", "%v; set it to %s or leave it unset for issuance.profile", err, c.Intermediate.Profile.DefaultLeaf())
		}
	}
}

// ValidateKubernetesSignerName checks a signer name of a
// certificates.k8s.io request (ValidateSignerName) and refuses the names
// Kubernetes reserves: signers under kubernetes.io and k8s.io belong to
// kube-controller-manager ("Kubernetes signers" in the Certificates and
// Certificate Signing Requests docs).
func ValidateKubernetesSignerName(s string) error {
	if err := ValidateSignerName(s); err != nil {
		return err
	}
	domain, _, _ := strings.Cut(s, "/")
	for _, r := range []string{"kubernetes.io", "k8s.io"} {
		if domain == r || strings.HasSuffix(domain, "."+r) {
			return fmt.Errorf("%q is reserved for Kubernetes' own signers (domain %s); use a domain of yours, e.g. %s", s, r, DefaultWorkloadSigner)
		}
	}
	if !strings.Contains(domain, ".") {
		return fmt.Errorf("%q: the domain %q needs at least two labels, as Kubernetes requires (e.g. %s)", s, domain, DefaultWorkloadSigner)
	}
	return nil
}

// requesterProblem explains why u cannot be an allowed requester, or is "".
func requesterProblem(u string) string {
	switch {
	case u == "":
		return "is empty; list exact usernames such as system:serviceaccount:istio-system:istiod"
	case strings.TrimSpace(u) != u:
		return fmt.Sprintf("%q has leading or trailing spaces; usernames are matched exactly", u)
	case strings.Contains(u, "*"):
		return fmt.Sprintf("%q: wildcards are not supported; list each username exactly", u)
	case strings.HasPrefix(u, "system:serviceaccounts"):
		return fmt.Sprintf("%q is a group, not a user; list the ServiceAccount's username, e.g. system:serviceaccount:istio-system:istiod", u)
	}
	if rest, ok := strings.CutPrefix(u, serviceAccountUser); ok {
		ns, name, ok := strings.Cut(rest, ":")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return fmt.Sprintf("%q is not a ServiceAccount username; use system:serviceaccount:<namespace>:<name>", u)
		}
	}
	return ""
}
