package config

// RotationConfig configures the rotations that need an operator's say.
type RotationConfig struct {
	Root RootRotationConfig `json:"root,omitzero"`
}

// RootRotationConfig are the default waits of a root rotation ('meshca
// rotate root' may override them per rotation). Zero means the default
// derived from the issuance TTLs.
type RootRotationConfig struct {
	// WorkloadsMinWait: phase 2 (wait-for-workloads) lasts at least this
	// long (default 10m), so that istiod and the namespaces' ConfigMaps
	// take the new bundle before the count of old certificates may end it.
	WorkloadsMinWait Duration `json:"workloadsMinWait,omitzero"`
	// WorkloadsMaxWait: phase 2 lasts at most this long (default
	// issuance.defaultCertTTL/2 + workloadsMinWait: istio-agent renews at
	// half its certificate's lifetime).
	WorkloadsMaxWait Duration `json:"workloadsMaxWait,omitzero"`
	// TTLMaxWait: phase 4 (wait-out-ttl) lasts at most this long (default
	// issuance.maxCertTTL).
	TTLMaxWait Duration `json:"ttlMaxWait,omitzero"`
}

func (r RootRotationConfig) validate(add func(string, string, ...any)) {
	for _, w := range []struct {
		key string
		d   Duration
	}{{"rotation.root.workloadsMinWait", r.WorkloadsMinWait}, {"rotation.root.workloadsMaxWait", r.WorkloadsMaxWait}, {"rotation.root.ttlMaxWait", r.TTLMaxWait}} {
		if w.d.Duration < 0 {
			add(w.key, "%s is negative; use a duration such as 30m or 12h, or leave it unset for the default", w.d.Duration)
		}
	}
	if r.WorkloadsMaxWait.Duration > 0 && r.WorkloadsMaxWait.Duration < r.WorkloadsMinWait.Duration {
		add("rotation.root.workloadsMaxWait", "%s is shorter than rotation.root.workloadsMinWait %s", r.WorkloadsMaxWait.Duration, r.WorkloadsMinWait.Duration)
	}
}
