package config

import "time"

// SignersConfig configures meshca's Kubernetes-native front doors: the
// CertificateSigningRequest API signer (istiod as an RA), the
// PodCertificateRequest signer and the cert-manager external issuer. They
// run as controllers on one controller-runtime manager and need
// kubernetes.kubeconfig or kubernetes.inCluster.
type SignersConfig struct {
	Controllers     ControllersConfig   `json:"controllers,omitzero"`
	CSR             CSRSignerConfig     `json:"csr,omitzero"`
	PodCertificates PodCertSignerConfig `json:"podCertificates,omitzero"`
	CertManager     CertManagerConfig   `json:"certManager,omitzero"`
}

// Defaults of signers.controllers.
const (
	DefaultLeaseName = "meshca-controllers"
	// DefaultLeaseDuration, DefaultRenewDeadline and DefaultRetryPeriod
	// are the Lease timings (client-go's leaderelection, as
	// kube-controller-manager uses them): a replica that stops renewing is
	// replaced after at most LeaseDuration; the holder gives up (and serve
	// ends) if it cannot renew within RenewDeadline; candidates retry
	// every RetryPeriod.
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// DefaultControllerQPS and DefaultControllerBurst are the controllers'
	// client-side rate limit towards the apiserver: 1000 CertificateSigningRequests
	// created at once need 1000 status writes, which client-go's default of
	// 5 per second would spread over minutes.
	DefaultControllerQPS   = 100
	DefaultControllerBurst = 200
)

// ControllersConfig configures the manager the controllers run on.
type ControllersConfig struct {
	// LeaderElection runs the controllers (and the trust publisher) on one
	// replica at a time, the holder of a coordination.k8s.io Lease.
	LeaderElection LeaderElectionConfig `json:"leaderElection,omitzero"`
	// QPS and Burst limit the controllers' requests to the apiserver.
	QPS   float32 `json:"qps,omitempty"`
	Burst int     `json:"burst,omitempty"`
}

// LeaderElectionConfig configures the controllers' Lease.
type LeaderElectionConfig struct {
	// Enabled is on unless set to false.
	Enabled *bool `json:"enabled,omitempty"`
	// Namespace of the Lease (default trustBundle.istiodNamespace).
	Namespace string `json:"namespace,omitempty"`
	// LeaseName (default meshca-controllers).
	LeaseName string `json:"leaseName,omitempty"`
	// LeaseDuration, RenewDeadline and RetryPeriod (defaults 15s, 10s, 2s).
	LeaseDuration Duration `json:"leaseDuration,omitzero"`
	RenewDeadline Duration `json:"renewDeadline,omitzero"`
	RetryPeriod   Duration `json:"retryPeriod,omitzero"`
}

// On reports whether leader election is enabled.
func (l LeaderElectionConfig) On() bool { return l.Enabled == nil || *l.Enabled }

// Any reports whether any Kubernetes-native signer is enabled.
func (s SignersConfig) Any() bool {
	return s.CSR.Enabled || s.PodCertificates.Enabled || s.CertManager.Enabled
}

func (s *SignersConfig) init(c *Config) {
	if s.Controllers.QPS == 0 {
		s.Controllers.QPS = DefaultControllerQPS
	}
	if s.Controllers.Burst == 0 {
		s.Controllers.Burst = DefaultControllerBurst
	}
	le := &s.Controllers.LeaderElection
	if le.Namespace == "" {
		le.Namespace = c.TrustBundle.IstiodNamespace
	}
	if le.LeaseName == "" {
		le.LeaseName = DefaultLeaseName
	}
	if le.LeaseDuration.Duration == 0 {
		le.LeaseDuration.Duration = DefaultLeaseDuration
	}
	if le.RenewDeadline.Duration == 0 {
		le.RenewDeadline.Duration = DefaultRenewDeadline
	}
	if le.RetryPeriod.Duration == 0 {
		le.RetryPeriod.Duration = DefaultRetryPeriod
	}
	s.CSR.init(c)
	s.PodCertificates.init(c)
	s.CertManager.init(c)
}

func (s *SignersConfig) validate(c *Config, add func(string, string, ...any)) {
	if s.Any() && !c.Kubernetes.Configured() {
		add("signers", "the Kubernetes signers need a cluster: set kubernetes.kubeconfig or kubernetes.inCluster, or disable signers.csr, signers.podCertificates and signers.certManager")
	}
	if s.Controllers.QPS < 0 || s.Controllers.Burst < 0 {
		add("signers.controllers", "qps and burst must not be negative (defaults %d and %d)", DefaultControllerQPS, DefaultControllerBurst)
	}
	if le := s.Controllers.LeaderElection; le.On() {
		if le.Namespace == "" {
			add("signers.controllers.leaderElection.namespace", "must be set: the namespace of the controllers' Lease (e.g. istio-system)")
		}
		le.validateTimings(add)
	}
	s.CSR.validate(c, add)
	s.PodCertificates.validate(c, add)
	s.CertManager.validate(c, add)
}

// validateTimings checks what client-go's leaderelection requires:
// leaseDuration > renewDeadline > 1.2 x retryPeriod (its jitter factor),
// all positive.
func (l LeaderElectionConfig) validateTimings(add func(string, string, ...any)) {
	const key = "signers.controllers.leaderElection"
	lease, renew, retry := l.LeaseDuration.Duration, l.RenewDeadline.Duration, l.RetryPeriod.Duration
	switch {
	case lease < 0 || renew < 0 || retry < 0:
		add(key, "leaseDuration, renewDeadline and retryPeriod must be positive (defaults %s, %s, %s)", DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod)
	case lease <= renew:
		add(key+".renewDeadline", "%s must be shorter than leaseDuration (%s), or a replica could lose the Lease while it still acts (defaults %s and %s)", renew, lease, DefaultRenewDeadline, DefaultLeaseDuration)
	case float64(renew) <= 1.2*float64(retry):
		add(key+".retryPeriod", "%s is too long for renewDeadline %s: renewDeadline must exceed 1.2 x retryPeriod (defaults %s and %s)", retry, renew, DefaultRenewDeadline, DefaultRetryPeriod)
	}
}
