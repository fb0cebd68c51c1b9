package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConditionReady is the issuer's one condition type.
const ConditionReady = "Ready"

// Reasons of the Ready condition.
const (
	// ReasonInitializing: seen, not yet checked.
	ReasonInitializing = "Initializing"
	// ReasonPending: the signing engine cannot sign right now (no CA
	// material yet, the intermediate expired and awaiting rotation); it is
	// re-checked, and requests wait (Pending) rather than fail.
	ReasonPending = "Pending"
	// ReasonChecked: the spec is valid and the engine can sign for it.
	ReasonChecked = "Checked"
	// ReasonFailed: the spec is invalid (e.g. a profile meshca's CA cannot
	// issue); fix the spec.
	ReasonFailed = "Failed"
)

// MeshIssuerSpec is how meshca signs the CertificateRequests that name the
// issuer. The identity of every certificate is
// spiffe://<trust domain>/ns/<the request's namespace>/sa/<name>, whatever
// the issuer: an issuer cannot widen meshca's issuance policy.
type MeshIssuerSpec struct {
	// Profile is the certificate profile of the issued certificates:
	// classical, catalyst (classical with ML-DSA alternative signatures),
	// composite or mldsa. It must be one meshca's CA can issue (a catalyst
	// CA issues catalyst and classical). Empty: meshca's issuance.profile.
	// +kubebuilder:validation:Enum=classical;catalyst;composite;mldsa
	// +optional
	Profile string `json:"profile,omitempty"`

	// MaxDuration caps the lifetime of the issued certificates; a
	// request's spec.duration above it is clamped (and meshca's policy
	// maximum clamps it further). Empty: the policy maximum only. It must
	// be a positive Go duration (time.ParseDuration, e.g. "2160h"): the
	// apiserver refuses anything else, so a stored issuer always decodes.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]{1,5}(\.[0-9]+)?(ns|us|µs|ms|s|m|h)){1,4}$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="maxDuration must be a positive duration such as 2160h"
	// +optional
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`

	// AllowCA lets requests with spec.isCA reach the signing engine, which
	// decides. meshca's intermediate has pathLenConstraint 0 (RFC 5280
	// §4.2.1.9), so today the engine refuses every CA request anyway and
	// the request fails with its reason; without AllowCA such a request
	// fails before it reaches the engine.
	// +optional
	AllowCA bool `json:"allowCA,omitempty"`
}

// MeshIssuerStatus is the issuer's health.
type MeshIssuerStatus struct {
	// Conditions hold one condition of type Ready, with reason
	// Initializing, Pending, Checked or Failed and the generation it
	// describes in observedGeneration.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// MeshIssuer signs the CertificateRequests of its own namespace with
// meshca's intermediate CA.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories=cert-manager
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshIssuerSpec   `json:"spec,omitempty"`
	Status MeshIssuerStatus `json:"status,omitempty"`
}

// MeshIssuerList is a list of MeshIssuers.
//
// +kubebuilder:object:root=true
type MeshIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshIssuer `json:"items"`
}

// MeshClusterIssuer signs CertificateRequests of every namespace with
// meshca's intermediate CA; each still gets only an identity of its own
// namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=cert-manager
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshClusterIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshIssuerSpec   `json:"spec,omitempty"`
	Status MeshIssuerStatus `json:"status,omitempty"`
}

// MeshClusterIssuerList is a list of MeshClusterIssuers.
//
// +kubebuilder:object:root=true
type MeshClusterIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshClusterIssuer `json:"items"`
}
