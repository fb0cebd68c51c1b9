package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
)

// Cluster modes (clusters[].mode).
const (
	// ClusterModeMeshcaSigns: the cluster's proxies ask meshca's Istio
	// endpoint for certificates; the clusterid header they send selects
	// the cluster whose TokenReview authenticates them.
	ClusterModeMeshcaSigns = "meshca-signs"
	// ClusterModePlugIn: the cluster's istiod signs with an intermediate of
	// its own that meshca mints, rotates and revokes and writes into that
	// cluster's cacerts Secret (Istio docs, "Plug in CA Certificates").
	ClusterModePlugIn = "plug-in"
)

// ClusterLineagePrefix starts the signer lineage (store.Generation.Signer)
// of a plug-in cluster's intermediate: "cluster:<id>". A colon is never in
// a certSigners name (a DNS-1123 subdomain), so the two cannot collide.
const ClusterLineagePrefix = "cluster:"

// DefaultIstioNamespace is istiod's namespace in a cluster.
const DefaultIstioNamespace = "istio-system"

// ClusterConfig is one more cluster of a multi-cluster mesh (Istio's
// multi-primary or primary-remote), reached through its own kubeconfig.
type ClusterConfig struct {
	// ID is the cluster's Istio cluster ID (its ISTIO_META_CLUSTER_ID, the
	// clusterid header its proxies send).
	ID string `json:"id"`
	// Kubeconfig is a kubeconfig file for the cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// KubeconfigSecret is a Secret of the local cluster that holds the
	// cluster's kubeconfig (as istioctl create-remote-secret writes it,
	// whose key is the cluster ID). Set it or Kubeconfig.
	KubeconfigSecret *SecretKeyRef `json:"kubeconfigSecret,omitempty"`
	// TrustDomain is the trust domain of the cluster's workloads. Default:
	// the mesh's (trustDomain). A meshca-signs cluster signs in the mesh's.
	TrustDomain string `json:"trustDomain,omitempty"`
	// Mode is ClusterModeMeshcaSigns or ClusterModePlugIn.
	Mode string `json:"mode"`
	// IstioNamespace is istiod's namespace in the cluster (default
	// istio-system): its cacerts Secret and the post-quantum anchors.
	IstioNamespace string `json:"istioNamespace,omitempty"`
	// Intermediate shapes a plug-in cluster's own intermediate.
	Intermediate ClusterIntermediateConfig `json:"intermediate,omitzero"`
}

// SecretKeyRef names one key of a Secret.
type SecretKeyRef struct {
	// Namespace defaults to trustBundle.istiodNamespace (meshca's own).
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Key defaults to the cluster ID (istioctl create-remote-secret's key).
	Key string `json:"key,omitempty"`
}

// ClusterIntermediateConfig is a plug-in cluster's intermediate: the
// intermediate section's lifetime and thresholds, with this subject and a
// classical key (istiod signs with ca-key.pem, which holds one).
type ClusterIntermediateConfig struct {
	// CommonName must differ from every other intermediate's (RFC 5280
	// section 5.1.2.3). Default: "<intermediate.commonName> cluster <id>".
	CommonName string `json:"commonName,omitempty"`
	// Organization defaults to intermediate.organization.
	Organization string `json:"organization,omitempty"`
}

// IsClusterLineage reports whether lineage is a plug-in cluster's
// intermediate, whose key is written into that cluster's cacerts Secret.
func IsClusterLineage(lineage string) bool { return strings.HasPrefix(lineage, ClusterLineagePrefix) }

// PlugIn reports whether meshca writes the cluster's cacerts Secret.
func (c ClusterConfig) PlugIn() bool { return c.Mode == ClusterModePlugIn }

// Lineage is the signer lineage of a plug-in cluster's intermediate.
func (c ClusterConfig) Lineage() string { return ClusterLineagePrefix + c.ID }

// ClusterIntermediate returns the intermediate section a plug-in cluster's
// intermediate is minted under: the shared one's lifetime, thresholds and
// grace period, the cluster's subject, and the classical profile with the
// intermediate's key algorithm (Istio's CA signs with RSA or ECDSA keys).
func (c *Config) ClusterIntermediate(cl ClusterConfig) IntermediateConfig {
	ic := c.Intermediate
	ic.Profile, ic.PQAlgorithm = profile.Classical, ""
	ic.CommonName, ic.Organization = cl.Intermediate.CommonName, cl.Intermediate.Organization
	return ic
}

// TokenReviewClusters are the remote clusters whose TokenReview the
// Istio endpoint selects by the clusterid header: every meshca-signs
// cluster and the deprecated kubernetes.remoteClusters, by cluster ID.
func (c *Config) TokenReviewClusters() map[string]ClusterConfig {
	out := map[string]ClusterConfig{}
	for id, path := range c.Kubernetes.RemoteClusters {
		out[id] = ClusterConfig{ID: id, Kubeconfig: path, Mode: ClusterModeMeshcaSigns, TrustDomain: c.TrustDomain}
	}
	for _, cl := range c.Clusters {
		if cl.Mode == ClusterModeMeshcaSigns {
			out[cl.ID] = cl
		}
	}
	return out
}

func (c *Config) resolveClusterPaths(base string) {
	for i := range c.Clusters {
		if p := &c.Clusters[i].Kubeconfig; *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

func (c *Config) initClusters() {
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if cl.TrustDomain == "" {
			cl.TrustDomain = c.TrustDomain
		}
		if cl.IstioNamespace == "" {
			cl.IstioNamespace = DefaultIstioNamespace
		}
		if s := cl.KubeconfigSecret; s != nil {
			if s.Namespace == "" {
				s.Namespace = c.TrustBundle.IstiodNamespace
			}
			if s.Key == "" {
				s.Key = cl.ID
			}
		}
		if cl.Mode == ClusterModePlugIn {
			if cl.Intermediate.CommonName == "" {
				cl.Intermediate.CommonName = c.Intermediate.CommonName + " cluster " + cl.ID
			}
			if cl.Intermediate.Organization == "" {
				cl.Intermediate.Organization = c.Intermediate.Organization
			}
		}
	}
}

func (c *Config) validateClusters(add func(string, string, ...any)) {
	seen := map[string]bool{}
	cns := map[string]string{c.Intermediate.CommonName: "intermediate.commonName"}
	for n, s := range c.Authentication.CertSigners {
		if s.Intermediate.Separate {
			cns[s.Intermediate.CommonName] = fmt.Sprintf("authentication.certSigners[%d]", n)
		}
	}
	for n, cl := range c.Clusters {
		key := fmt.Sprintf("clusters[%d]", n)
		switch {
		case cl.ID == "":
			add(key+".id", "must be set: the cluster's Istio cluster ID (its ISTIO_META_CLUSTER_ID, values.global.multiCluster.clusterName)")
		case len(validation.IsValidLabelValue(cl.ID)) > 0: // at most 63 characters, as Istio uses it (topology.istio.io/cluster)
			add(key+".id", "%s is not a valid Istio cluster ID (Istio uses it as a Kubernetes label value): %s", identity.Quote(cl.ID), strings.Join(validation.IsValidLabelValue(cl.ID), "; "))
		case seen[cl.ID]:
			add(key+".id", "%q is used twice; each cluster is listed once", cl.ID)
		case cl.ID == c.Kubernetes.ClusterID && c.Kubernetes.Configured():
			add(key+".id", "%q is kubernetes.clusterID, the local cluster, which meshca serves through the kubernetes and trustBundle sections; remove it from clusters", cl.ID)
		case c.Kubernetes.RemoteClusters[cl.ID] != "":
			add(key+".id", "%q is also in kubernetes.remoteClusters (deprecated); remove it there", cl.ID)
		}
		seen[cl.ID] = true
		switch {
		case cl.Kubeconfig != "" && cl.KubeconfigSecret != nil:
			add(key, "set kubeconfig (a file) or kubeconfigSecret, not both")
		case cl.Kubeconfig == "" && cl.KubeconfigSecret == nil:
			add(key, "needs the cluster's kubeconfig: set kubeconfig (a file) or kubeconfigSecret {namespace, name, key} (e.g. the Secret istioctl create-remote-secret makes)")
		case cl.KubeconfigSecret != nil:
			if !c.Kubernetes.Configured() {
				add(key+".kubeconfigSecret", "is read from the local cluster, which is not configured: set kubernetes.kubeconfig or kubernetes.inCluster, or use kubeconfig (a file)")
			}
			s := cl.KubeconfigSecret
			if errs := validation.IsDNS1123Subdomain(s.Name); len(errs) > 0 {
				add(key+".kubeconfigSecret.name", "%s is not a Secret name: %s", identity.Quote(s.Name), strings.Join(errs, "; "))
			}
			if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
				add(key+".kubeconfigSecret.namespace", "%s is not a namespace name: %s", identity.Quote(s.Namespace), strings.Join(errs, "; "))
			}
			if errs := validation.IsConfigMapKey(s.Key); len(errs) > 0 {
				add(key+".kubeconfigSecret.key", "%s is not a Secret key: %s", identity.Quote(s.Key), strings.Join(errs, "; "))
			}
		}
		if _, err := identity.TrustDomain(cl.TrustDomain); err != nil {
			add(key+".trustDomain", "%v; use the trust domain of the cluster's meshConfig.trustDomain, e.g. cluster.local", err)
		}
		if errs := validation.IsDNS1123Label(cl.IstioNamespace); len(errs) > 0 {
			add(key+".istioNamespace", "%s is not a namespace name: %s", identity.Quote(cl.IstioNamespace), strings.Join(errs, "; "))
		}
		switch cl.Mode {
		case ClusterModeMeshcaSigns:
			if cl.TrustDomain != c.TrustDomain {
				add(key+".trustDomain", "%q differs from trustDomain %q, but meshca signs a meshca-signs cluster's workloads in the mesh's trust domain; remove it, or use mode plug-in", cl.TrustDomain, c.TrustDomain)
			}
			if cl.Intermediate != (ClusterIntermediateConfig{}) {
				add(key+".intermediate", "is set, but a meshca-signs cluster's workloads get meshca's own intermediate; remove it, or use mode plug-in")
			}
		case ClusterModePlugIn:
			c.validatePlugInCluster(key, cl, cns, add)
		default:
			add(key+".mode", "%q is not a mode; use %s (the cluster's proxies ask meshca, selected by their clusterid header) or %s (meshca writes the cluster's cacerts Secret for its istiod)", cl.Mode, ClusterModeMeshcaSigns, ClusterModePlugIn)
		}
	}
}

// validatePlugInCluster checks what meshca needs to give a cluster's
// istiod an intermediate of its own.
func (c *Config) validatePlugInCluster(key string, cl ClusterConfig, cns map[string]string, add func(string, string, ...any)) {
	if c.Root.Source != RootSourceVault && !c.Root.File.Minted() {
		add(key+".mode", "plug-in needs a root meshca can mint intermediates from (root.file.rootCert and rootKey, or root.source vault); with root.file.cacertsDir there is one pre-issued intermediate")
	}
	if c.KeyStore.Type != "softkms" {
		add(key+".mode", "plug-in writes the cluster's intermediate key into its cacerts Secret (ca-key.pem, for istiod to sign with), so the key must be a file: use keyStore.type softkms, or mode meshca-signs")
	}
	if c.Intermediate.KeyAlgorithm == keys.Ed25519 {
		add(key+".mode", "plug-in hands istiod an intermediate with intermediate.keyAlgorithm's key, and Istio's CA signs with RSA or ECDSA keys only; set intermediate.keyAlgorithm to EC-P256, EC-P384 or RSA-3072")
	}
	ci := cl.Intermediate
	if n := len(ci.CommonName); n > maxCommonName {
		add(key+".intermediate.commonName", "%s has %d characters; a common name has at most %d (RFC 5280 ub-common-name): set a shorter one", identity.Quote(ci.CommonName), n, maxCommonName)
	}
	if other, ok := cns[ci.CommonName]; ok {
		add(key+".intermediate.commonName", "%s is already the common name of %s; each intermediate needs its own subject so that its CRLs name one issuer (RFC 5280 section 5.1.2.3)", identity.Quote(ci.CommonName), other)
	}
	cns[ci.CommonName] = key + ".intermediate.commonName"
}

// SeparateLineages are the signer lineages this configuration runs beside
// the default signer's, each with an intermediate that signs: every
// certSigner's with intermediate.separate and every plug-in cluster's. A
// lineage in the store that is neither the default nor among them (a
// signer or a cluster removed from the configuration) signs nothing any
// more, so its active generation may be revoked.
func (c *Config) SeparateLineages() []string {
	var out []string
	for _, s := range c.Authentication.CertSigners {
		if _, ok := c.SeparateIntermediate(s); ok {
			out = append(out, s.Name)
		}
	}
	for _, cl := range c.Clusters {
		if cl.PlugIn() {
			out = append(out, cl.Lineage())
		}
	}
	return out
}
