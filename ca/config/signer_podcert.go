package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshca/meshca/ca/profile"
)

// PodCertificateRequest limits (Kubernetes API docs, certificates.k8s.io/v1
// PodCertificateRequestSpec.maxExpirationSeconds): a signer issues at
// least one hour and at most the request's maximum, which kube-apiserver
// caps at 91 days.
const (
	PodCertMinLifetime = time.Hour
	PodCertMaxLifetime = 91 * 24 * time.Hour
)

// PodCertSignerConfig configures the PodCertificateRequest
// (certificates.k8s.io/v1, KEP-4317) signer: kubelets ask it for the
// certificates of podCertificate projected volumes.
type PodCertSignerConfig struct {
	// Enabled runs it (default off).
	Enabled bool `json:"enabled,omitempty"`
	// SignerName is the signer the pods' podCertificate volumes name
	// (default meshca.io/workload). When meshca publishes
	// ClusterTrustBundles it must be one of
	// trustBundle.clusterTrustBundles.signerNames, so that pods can mount
	// the roots with a clusterTrustBundle source for the same signer.
	SignerName string `json:"signerName,omitempty"`
	// MaxDuration caps a certificate's lifetime (notAfter − notBefore)
	// below the request's maxExpirationSeconds; at least 1h. Empty: only
	// the request and issuance.maxCertTTL limit it.
	MaxDuration Duration `json:"maxDuration,omitzero"`
	// Profile is the certificates' profile (classical, catalyst, ...);
	// empty means issuance.profile.
	Profile profile.Name `json:"profile,omitempty"`
	// UserAnnotations are the spec.unverifiedUserAnnotations keys meshca
	// accepts (and ignores); a request with any other key is denied, as
	// the API asks of signers. None by default.
	UserAnnotations []string `json:"userAnnotations,omitempty"`
}

func (s *PodCertSignerConfig) init(c *Config) {
	if s.SignerName == "" {
		s.SignerName = DefaultWorkloadSigner
	}
}

func (s *PodCertSignerConfig) validate(c *Config, add func(string, string, ...any)) {
	if !s.Enabled {
		return
	}
	const k = "signers.podCertificates."
	if err := ValidateKubernetesSignerName(s.SignerName); err != nil {
		add(k+"signerName", "%v", err)
	}
	if tb := c.TrustBundle; tb.Enabled && tb.ClusterTrustBundles.On() && !slices.Contains(tb.ClusterTrustBundles.SignerNames, s.SignerName) {
		add(k+"signerName", "%q has no ClusterTrustBundle: add it to trustBundle.clusterTrustBundles.signerNames (now %v) so that pods can mount meshca's roots with a clusterTrustBundle source for the signer", s.SignerName, tb.ClusterTrustBundles.SignerNames)
	}
	if d := s.MaxDuration.Duration; d != 0 && (d < PodCertMinLifetime || d > PodCertMaxLifetime) {
		add(k+"maxDuration", "%s is out of range; use %s to %s (kube-apiserver's limits for a pod certificate), or leave it empty", d, PodCertMinLifetime, PodCertMaxLifetime)
	}
	if s.Profile != "" {
		if !s.Profile.Valid() {
			add(k+"profile", "%q is not supported; use one of %v, or leave it empty for issuance.profile", s.Profile, profile.All)
		} else if c.Intermediate.Profile.Valid() {
			if err := c.Intermediate.Profile.CheckLeaf(s.Profile); err != nil {
				add(k+"profile", "%v; leave it empty for issuance.profile (%s)", err, c.Issuance.Profile)
			}
		}
	}
	seen := map[string]bool{}
	for i, key := range s.UserAnnotations {
		if msgs := validation.IsQualifiedName(key); len(msgs) > 0 || !strings.Contains(key, "/") {
			add(fmt.Sprintf(k+"userAnnotations[%d]", i), "%q is not a domain-prefixed annotation key (e.g. meshca.io/purpose), as spec.unverifiedUserAnnotations keys must be", key)
		}
		if seen[key] {
			add(fmt.Sprintf(k+"userAnnotations[%d]", i), "%q is listed twice", key)
		}
		seen[key] = true
	}
}
