// Package certmanager is meshca's cert-manager external issuer
// (https://cert-manager.io/docs/contributing/external-issuers/): the
// MeshIssuer and MeshClusterIssuer kinds of group issuer.meshca.io (package
// api/v1alpha1, CRDs in deploy/crds) and two controllers on meshca's
// shared manager (issuer/kubesigner):
//
//   - "meshissuer" keeps each issuer's Ready condition: Initializing when
//     first seen, Checked when the spec is valid and the signing engine can
//     sign its profile now, Pending while the engine cannot (no CA material,
//     an expired intermediate awaiting rotation), Failed for a spec meshca
//     can never honour. The check signs nothing; it runs again every
//     signers.certManager.healthCheckInterval.
//   - "certificaterequest" signs cert-manager.io/v1 CertificateRequests
//     whose spec.issuerRef.group is exactly issuer.meshca.io (an empty kind
//     means MeshIssuer) once cert-manager's approver has Approved them; it
//     writes Ready=False/Denied for Denied ones, Pending for anything
//     transient (cert-manager backs off for hours after Failed), Failed
//     with status.failureTime for a request that can never be signed, and
//     Issued with the leaf and intermediates in status.certificate.
//
// The identity of every certificate is the CSR's one URI SAN, and it must
// be spiffe://<trust domain>/ns/<the CertificateRequest's namespace>/sa/<name>:
// whoever may create CertificateRequests in a namespace (and have them
// approved) gets identities of that namespace only, from a MeshIssuer and a
// MeshClusterIssuer alike. DNS and IP SANs and a common name are granted
// only as meshca's issuance policy allows them for that identity (by
// default never); an issuer cannot widen the policy.
//
// Usages: an empty spec.usages means cert-manager's default, digital
// signature and key encipherment
// (https://cert-manager.io/docs/reference/api-docs/#cert-manager.io/v1.CertificateRequestSpec).
// Such a certificate has no extended key usage, which X509-SVID §4.4
// permits (SHOULD) and RFC 5280 §4.2.1.12 reads as unrestricted; Envoy
// accepts it for mTLS. List "server auth" and "client auth" in the
// Certificate's usages to get both EKUs, as istiod's certificates have.
// keyEncipherment is granted to RSA keys only (RFC 5480 §3, RFC 8410 §5);
// for other keys it is dropped and an Event says so.
//
// All status writes are server-side apply on the /status subresource with
// field manager "meshca".
package certmanager
