// Package csrsigner is meshca's signer for the Kubernetes
// CertificateSigningRequest API (certificates.k8s.io/v1), for istiod
// running as a registration authority (EXTERNAL_CA=ISTIOD_RA_KUBERNETES_API,
// K8S_SIGNER=<one of meshca's signer names>).
//
// istiod validates a workload's CSR, creates a CertificateSigningRequest
// (generateName csr-workload-, usages digital signature, key encipherment,
// server auth and client auth, expirationSeconds from the requested TTL),
// approves it itself and waits 60 s for status.certificate
// (istio.io/istio security/pkg/pki/ra/k8s_ra.go, security/pkg/k8s/chiron).
// Because the requester approves itself, Approved proves nothing about an
// operator: the allow-list of requesters (spec.username) is the gate.
//
// What it owns: reconciling the CertificateSigningRequests of its
// configured signerNames, and writing their status (status.certificate, or
// a Failed condition) through the /status subresource. It never approves
// or denies (the /approval subresource is the approver's), never writes a
// request of another signer, and never signs a request that is not
// Approved, is Denied or Failed, or already holds a certificate. The
// identity is the CSR's one SPIFFE URI SAN, which must be in the mesh's
// trust domain; the signing engine (ca/authority) and its policy decide
// everything else. A transient engine error is retried with backoff and
// never written as a failure.
//
// The Kubernetes documentation this follows: "Certificates and Certificate
// Signing Requests" (kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/),
// and the certificates.k8s.io/v1 API reference.
package csrsigner
