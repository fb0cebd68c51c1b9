package config

// CSRSignerConfig configures the CertificateSigningRequest (certificates.k8s.io/v1) signer for istiod as an RA.
type CSRSignerConfig struct {
	// Enabled runs it (default off).
	Enabled bool `json:"enabled,omitempty"`
}

func (s *CSRSignerConfig) init(c *Config) {}

func (s *CSRSignerConfig) validate(c *Config, add func(string, string, ...any)) {}
