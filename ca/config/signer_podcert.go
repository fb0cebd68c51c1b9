package config

// PodCertSignerConfig configures the PodCertificateRequest (certificates.k8s.io/v1) signer.
type PodCertSignerConfig struct {
	// Enabled runs it (default off).
	Enabled bool `json:"enabled,omitempty"`
}

func (s *PodCertSignerConfig) init(c *Config) {}

func (s *PodCertSignerConfig) validate(c *Config, add func(string, string, ...any)) {}
