package config

// CertManagerConfig configures the cert-manager external issuer (MeshIssuer, MeshClusterIssuer).
type CertManagerConfig struct {
	// Enabled runs it (default off).
	Enabled bool `json:"enabled,omitempty"`
}

func (s *CertManagerConfig) init(c *Config) {}

func (s *CertManagerConfig) validate(c *Config, add func(string, string, ...any)) {}
