// Package v1alpha1 is meshca's cert-manager external issuer API, group
// issuer.meshca.io: MeshIssuer (namespaced) and MeshClusterIssuer
// (cluster-scoped). A cert-manager CertificateRequest names one in
// spec.issuerRef (group issuer.meshca.io, kind MeshIssuer or
// MeshClusterIssuer) to have meshca's intermediate CA sign it; see
// https://cert-manager.io/docs/contributing/external-issuers/.
//
// +kubebuilder:object:generate=true
// +groupName=issuer.meshca.io
package v1alpha1

// The deep copies (zz_generated.deepcopy.go) and the CRDs in deploy/crds
// are generated from the markers in types.go:
//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 object crd:crdVersions=v1 paths=./ output:crd:artifacts:config=../../../../deploy/crds

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group; a CertificateRequest is meshca's exactly when its
// spec.issuerRef.group equals it.
const Group = "issuer.meshca.io"

// Kinds of the API.
const (
	KindMeshIssuer        = "MeshIssuer"
	KindMeshClusterIssuer = "MeshClusterIssuer"
)

var (
	// GroupVersion is issuer.meshca.io/v1alpha1.
	GroupVersion = schema.GroupVersion{Group: Group, Version: "v1alpha1"}

	// SchemeBuilder registers the kinds with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &MeshIssuer{}, &MeshIssuerList{}, &MeshClusterIssuer{}, &MeshClusterIssuerList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
