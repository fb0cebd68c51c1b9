package config

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Trust distribution defaults: Istio's plug-in CA Secret `cacerts` and the
// istio-ca-root-cert ConfigMap (Istio docs, "Plug in CA Certificates"), and
// Kubernetes ClusterTrustBundles (KEP-3257).
const (
	DefaultIstiodNamespace  = "istio-system"
	DefaultCRLConfigMapName = "istio-ca-crl"
	DefaultWorkloadSigner   = "meshca.io/workload"
)

// DefaultNamespaceExclusions are the namespaces that never get meshca's
// root and CRL ConfigMaps unless namespaceExclusions is set explicitly.
var DefaultNamespaceExclusions = []string{"kube-system", "kube-public", "kube-node-lease"}

// TrustBundleConfig configures trust distribution into Kubernetes: the
// cacerts Secret for istiod, the root and CRL ConfigMaps in every namespace,
// and ClusterTrustBundles.
type TrustBundleConfig struct {
	// Enabled turns publishing on. Off, meshca never talks to Kubernetes.
	Enabled bool `json:"enabled"`
	// PublishCACerts writes Istio's cacerts Secret (the intermediate key
	// included) so that istiod signs as a plug-in CA. Leave it off when
	// meshca is the CA (ENABLE_CA_SERVER=false): then only roots, CRLs and
	// bundles are published and the key never leaves meshca.
	PublishCACerts bool `json:"publishCACerts"`
	// IstiodNamespace holds the cacerts Secret (Istio's default istio-system).
	IstiodNamespace string `json:"istiodNamespace"`
	// TakeOwnership lets meshca overwrite a cacerts Secret that it did not
	// create. Off, such a Secret is left alone and reported.
	TakeOwnership bool `json:"takeOwnership"`
	// NamespaceExclusions never get the ConfigMaps. Unset means
	// DefaultNamespaceExclusions; an explicit [] excludes none.
	NamespaceExclusions []string `json:"namespaceExclusions"`
	// NamespaceSelector is a label selector ("istio-injection=enabled",
	// "env in (prod,staging)"); only matching namespaces get the ConfigMaps.
	// Empty selects every namespace.
	NamespaceSelector string `json:"namespaceSelector,omitempty"`
	// CRLConfigMapName is Istio's pilot.crlConfigMapName.
	CRLConfigMapName    string                    `json:"crlConfigMapName"`
	ClusterTrustBundles ClusterTrustBundlesConfig `json:"clusterTrustBundles"`
}

// ClusterTrustBundlesConfig configures the ClusterTrustBundles meshca
// publishes (certificates.k8s.io/v1, or v1beta1 on older clusters).
type ClusterTrustBundlesConfig struct {
	// Enabled publishes them; Init turns it on unless set to false.
	Enabled *bool `json:"enabled,omitempty"`
	// SignerNames get one signer-linked bundle each, named
	// "<signerName with / as :>:roots".
	SignerNames []string `json:"signerNames"`
	// IstiodBundle also publishes istiod's istio.io:istiod-ca:root-cert
	// (signerName istio.io/istiod-ca), for ENABLE_CLUSTER_TRUST_BUNDLE_API.
	IstiodBundle bool `json:"istiodBundle"`
}

// On reports whether ClusterTrustBundles are published.
func (c ClusterTrustBundlesConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// Init fills every unset value of the section with its default.
func (t *TrustBundleConfig) Init() {
	if t.IstiodNamespace == "" {
		t.IstiodNamespace = DefaultIstiodNamespace
	}
	if t.NamespaceExclusions == nil {
		t.NamespaceExclusions = append([]string(nil), DefaultNamespaceExclusions...)
	}
	if t.CRLConfigMapName == "" {
		t.CRLConfigMapName = DefaultCRLConfigMapName
	}
	if t.ClusterTrustBundles.Enabled == nil {
		on := true
		t.ClusterTrustBundles.Enabled = &on
	}
	if t.ClusterTrustBundles.SignerNames == nil {
		t.ClusterTrustBundles.SignerNames = []string{DefaultWorkloadSigner}
	}
}

func (t *TrustBundleConfig) init() { t.Init() }

// Validate returns every problem of the section at once, keys prefixed with
// "trustBundle.".
func (t TrustBundleConfig) Validate() error {
	var errs []error
	t.validate(func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	})
	return errors.Join(errs...)
}

func (t TrustBundleConfig) validate(add func(string, string, ...any)) {
	for _, msg := range validation.IsDNS1123Label(t.IstiodNamespace) {
		add("trustBundle.istiodNamespace", "%q is not a namespace name: %s", t.IstiodNamespace, msg)
	}
	for i, ns := range t.NamespaceExclusions {
		for _, msg := range validation.IsDNS1123Label(ns) {
			add(fmt.Sprintf("trustBundle.namespaceExclusions[%d]", i), "%q is not a namespace name: %s", ns, msg)
		}
	}
	if _, err := labels.Parse(t.NamespaceSelector); err != nil {
		add("trustBundle.namespaceSelector", "%q is not a label selector (e.g. istio-injection=enabled or env in (prod,staging)): %v", t.NamespaceSelector, err)
	}
	for _, msg := range validation.IsDNS1123Subdomain(t.CRLConfigMapName) {
		add("trustBundle.crlConfigMapName", "%q is not a ConfigMap name: %s", t.CRLConfigMapName, msg)
	}
	// The other ConfigMaps the publisher writes: Istio's root ConfigMap and
	// the PQ trust anchors in istiod's namespace.
	if t.CRLConfigMapName == "istio-ca-root-cert" || t.CRLConfigMapName == "meshca-pq-trust-anchors" {
		add("trustBundle.crlConfigMapName", "%q is a ConfigMap meshca publishes other content in; keep the default %s (Istio's pilot.crlConfigMapName)", t.CRLConfigMapName, DefaultCRLConfigMapName)
	}
	seen := map[string]bool{}
	for i, s := range t.ClusterTrustBundles.SignerNames {
		key := fmt.Sprintf("trustBundle.clusterTrustBundles.signerNames[%d]", i)
		if err := ValidateSignerName(s); err != nil {
			add(key, "%v", err)
		}
		if seen[s] {
			add(key, "%q is listed twice", s)
		}
		seen[s] = true
	}
}

// ValidateSignerName checks a Kubernetes signer name: "<domain>/<path>",
// where the domain is a DNS subdomain and the path is non-empty, so that it
// can also name a ClusterTrustBundle ("<domain>:<path>:...").
func ValidateSignerName(s string) error {
	domain, path, ok := strings.Cut(s, "/")
	if !ok || domain == "" || path == "" || strings.Contains(path, "/") {
		return fmt.Errorf("%q is not a signer name; use <domain>/<name>, e.g. %s", s, DefaultWorkloadSigner)
	}
	if msgs := validation.IsDNS1123Subdomain(domain); len(msgs) > 0 {
		return fmt.Errorf("%q: the domain %q is not a DNS name: %s", s, domain, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Subdomain(path); len(msgs) > 0 {
		return fmt.Errorf("%q: the name %q must be lower-case letters, digits, '-' and '.': %s", s, path, strings.Join(msgs, "; "))
	}
	return nil
}
