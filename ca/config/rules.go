package config

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Alert rule and inventory defaults.
const (
	DefaultRulesInterval          = time.Minute
	MinRulesInterval              = 10 * time.Second
	DefaultExpiryWarningFraction  = 0.3
	DefaultExpiryWarningBefore    = 7 * 24 * time.Hour
	DefaultExpiryCriticalBefore   = 3 * 24 * time.Hour
	DefaultRootSourceUnhealthyFor = 5 * time.Minute
	// DefaultWorkloadRenewalWindow: istio-agent renews a workload
	// certificate at half its lifetime (24h by default), so a workload
	// whose newest certificate has under 6h left missed its renewal by 6h.
	DefaultWorkloadRenewalWindow = 6 * time.Hour
	DefaultInventoryNamespaces   = 50
	MaxInventoryNamespaces       = 1000
	DefaultWorkloadRefresh       = time.Minute
	// MonitorLabel marks a kubernetes.io/tls Secret for the Secret scan.
	MonitorLabel = "meshca.io/monitor"
)

// AlertRulesConfig configures meshca's alert rules.
type AlertRulesConfig struct {
	// Interval is how often the rules are evaluated; default 1m.
	Interval Duration         `json:"interval,omitzero"`
	Expiry   ExpiryRuleConfig `json:"expiry,omitzero"`
	// RootSourceUnhealthyFor is how long the root source (Vault) may fail
	// its health check before RootSourceUnreachable fires; default 5m.
	RootSourceUnhealthyFor Duration `json:"rootSourceUnhealthyFor,omitzero"`
	// WorkloadRenewalWindow: a namespace whose earliest newest-workload-
	// certificate expires within it raises WorkloadCertificatesNotRenewed;
	// default 6h.
	WorkloadRenewalWindow Duration `json:"workloadRenewalWindow,omitzero"`
}

// ExpiryRuleConfig are the CA certificate expiry thresholds.
type ExpiryRuleConfig struct {
	// WarningFraction of the lifetime left, or WarningBefore left,
	// whichever comes first, warns; defaults 0.3 and 7d.
	WarningFraction float64  `json:"warningFraction,omitempty"`
	WarningBefore   Duration `json:"warningBefore,omitzero"`
	// CriticalBefore left, or expiry, is critical; default 3d.
	CriticalBefore Duration `json:"criticalBefore,omitzero"`
}

func (r *AlertRulesConfig) init() {
	if r.Interval.Duration == 0 {
		r.Interval.Duration = DefaultRulesInterval
	}
	if r.Expiry.WarningFraction == 0 {
		r.Expiry.WarningFraction = DefaultExpiryWarningFraction
	}
	if r.Expiry.WarningBefore.Duration == 0 {
		r.Expiry.WarningBefore.Duration = DefaultExpiryWarningBefore
	}
	if r.Expiry.CriticalBefore.Duration == 0 {
		r.Expiry.CriticalBefore.Duration = DefaultExpiryCriticalBefore
	}
	if r.RootSourceUnhealthyFor.Duration == 0 {
		r.RootSourceUnhealthyFor.Duration = DefaultRootSourceUnhealthyFor
	}
	if r.WorkloadRenewalWindow.Duration == 0 {
		r.WorkloadRenewalWindow.Duration = DefaultWorkloadRenewalWindow
	}
}

func (r AlertRulesConfig) validate(add func(string, string, ...any)) {
	if r.Interval.Duration < MinRulesInterval {
		add("alerts.rules.interval", "%s is too short; use at least %s (default %s)", r.Interval.Duration, MinRulesInterval, DefaultRulesInterval)
	}
	if f := r.Expiry.WarningFraction; f <= 0 || f >= 1 {
		add("alerts.rules.expiry.warningFraction", "%v is out of range; use a fraction of the lifetime left between 0 and 1 (default %v)", f, DefaultExpiryWarningFraction)
	}
	if r.Expiry.WarningBefore.Duration < 0 || r.Expiry.CriticalBefore.Duration < 0 {
		add("alerts.rules.expiry", "warningBefore and criticalBefore must not be negative")
	}
	if r.Expiry.CriticalBefore.Duration > r.Expiry.WarningBefore.Duration {
		add("alerts.rules.expiry.criticalBefore", "%s is longer than alerts.rules.expiry.warningBefore (%s); a certificate warns before it is critical",
			r.Expiry.CriticalBefore.Duration, r.Expiry.WarningBefore.Duration)
	}
	if r.RootSourceUnhealthyFor.Duration < 0 {
		add("alerts.rules.rootSourceUnhealthyFor", "must not be negative")
	}
	if r.WorkloadRenewalWindow.Duration < 0 {
		add("alerts.rules.workloadRenewalWindow", "must not be negative")
	}
}

// InventoryConfig configures the inventories beyond meshca's CA material.
type InventoryConfig struct {
	Workloads  WorkloadInventoryConfig `json:"workloads,omitzero"`
	SecretScan SecretScanConfig        `json:"secretScan,omitzero"`
}

// WorkloadInventoryConfig is the workload certificate expiry per
// namespace, from meshca's issuance records.
type WorkloadInventoryConfig struct {
	// Enabled: default true.
	Enabled *bool `json:"enabled,omitempty"`
	// MaxNamespaces is how many namespaces get their own series (the
	// soonest to expire); the rest are summed in namespace "_other".
	MaxNamespaces int `json:"maxNamespaces,omitempty"`
	// Refresh is how old the aggregate may be when it is read; default 1m.
	Refresh Duration `json:"refresh,omitzero"`
}

// IsEnabled reports whether the workload inventory runs.
func (w WorkloadInventoryConfig) IsEnabled() bool { return w.Enabled == nil || *w.Enabled }

// SecretScanConfig is the scan of workload certificate Secrets (clusters
// whose proxies still write them).
type SecretScanConfig struct {
	// Enabled: default false. The scan lists and watches Secrets
	// cluster-wide and trusts whatever certificate a namespace writes into
	// a selected Secret (an inventory, not a trust decision): opt in.
	Enabled *bool `json:"enabled,omitempty"`
	// Selectors choose the Secrets: each by type (a field selector) and
	// optionally a label selector, both applied by the apiserver.
	Selectors []SecretSelector `json:"selectors,omitempty"`
	// MaxNamespaces is as for workloads.
	MaxNamespaces int `json:"maxNamespaces,omitempty"`
}

// SecretSelector selects Secrets by type and labels.
type SecretSelector struct {
	Type          string `json:"type"`
	LabelSelector string `json:"labelSelector,omitempty"`
}

// IsEnabled reports whether the Secret scan runs (opt-in; it also needs a
// cluster).
func (s SecretScanConfig) IsEnabled() bool { return s.Enabled != nil && *s.Enabled }

func (i *InventoryConfig) init() {
	if i.Workloads.MaxNamespaces == 0 {
		i.Workloads.MaxNamespaces = DefaultInventoryNamespaces
	}
	if i.Workloads.Refresh.Duration == 0 {
		i.Workloads.Refresh.Duration = DefaultWorkloadRefresh
	}
	if i.SecretScan.MaxNamespaces == 0 {
		i.SecretScan.MaxNamespaces = DefaultInventoryNamespaces
	}
	if i.SecretScan.Selectors == nil {
		i.SecretScan.Selectors = []SecretSelector{
			{Type: "istio.io/key-and-cert"},
			{Type: "kubernetes.io/tls", LabelSelector: MonitorLabel + "=true"},
		}
	}
}

func (i InventoryConfig) validate(add func(string, string, ...any)) {
	for _, f := range []struct {
		key string
		n   int
	}{{"inventory.workloads.maxNamespaces", i.Workloads.MaxNamespaces}, {"inventory.secretScan.maxNamespaces", i.SecretScan.MaxNamespaces}} {
		if key, n := f.key, f.n; n < 1 || n > MaxInventoryNamespaces {
			add(key, "%d is out of range; use 1 to %d (default %d): each namespace is a metric series", n, MaxInventoryNamespaces, DefaultInventoryNamespaces)
		}
	}
	if i.Workloads.Refresh.Duration < time.Second {
		add("inventory.workloads.refresh", "%s is too short; use at least 1s (default %s): each refresh reads the store's expiry index", i.Workloads.Refresh.Duration, DefaultWorkloadRefresh)
	}
	for n, s := range i.SecretScan.Selectors {
		if s.Type == "" {
			add(selectorKey(n, "type"), "must be set (e.g. istio.io/key-and-cert or kubernetes.io/tls): the scan reads only Secrets of the types named")
		}
		if _, err := labels.Parse(s.LabelSelector); err != nil {
			add(selectorKey(n, "labelSelector"), "%v; write a Kubernetes label selector such as %s=true", err, MonitorLabel)
		}
	}
}

func selectorKey(n int, field string) string {
	return fmt.Sprintf("inventory.secretScan.selectors[%d].%s", n, field)
}
