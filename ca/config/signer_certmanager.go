package config

import "time"

// Defaults and bounds of signers.certManager.
const (
	// DefaultCertManagerHealthCheckInterval is how often each MeshIssuer and
	// MeshClusterIssuer is re-checked.
	DefaultCertManagerHealthCheckInterval = 5 * time.Minute
	MinCertManagerHealthCheckInterval     = time.Second
	MaxCertManagerHealthCheckInterval     = 24 * time.Hour
)

// CertManagerConfig configures the cert-manager external issuer (MeshIssuer,
// MeshClusterIssuer): a controller that keeps the issuers' Ready condition
// and one that signs the cert-manager CertificateRequests naming them.
type CertManagerConfig struct {
	// Enabled runs it (default off). The CRDs in deploy/crds and the RBAC
	// in deploy/rbac/certmanager-issuer.yaml must be installed.
	Enabled bool `json:"enabled,omitempty"`
	// HealthCheckInterval is how often every issuer's Ready condition is
	// re-checked against the signing engine (default 5m). The check signs
	// nothing: it asks whether the CA has material that can sign the
	// issuer's profile now.
	HealthCheckInterval Duration `json:"healthCheckInterval,omitzero"`
}

func (s *CertManagerConfig) init(c *Config) {
	if s.HealthCheckInterval.Duration == 0 {
		s.HealthCheckInterval.Duration = DefaultCertManagerHealthCheckInterval
	}
}

func (s *CertManagerConfig) validate(c *Config, add func(string, string, ...any)) {
	if i := s.HealthCheckInterval.Duration; i < MinCertManagerHealthCheckInterval || i > MaxCertManagerHealthCheckInterval {
		add("signers.certManager.healthCheckInterval", "%s is out of range; use %s to %s (default %s)",
			i, MinCertManagerHealthCheckInterval, MaxCertManagerHealthCheckInterval, DefaultCertManagerHealthCheckInterval)
	}
}
