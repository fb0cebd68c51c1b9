// Package kubesigner is what meshca's Kubernetes-native front doors share:
// the controller-runtime manager they all run on (one cache, client rate
// limits; serve runs it under the Lease of its singleton jobs), the
// signing engine they call, how
// an engine error splits into transient (retry, never fail the request)
// and permanent, the PEM chain they write back, and their meshca_*
// metrics (reconcile outcomes and work-queue depth).
//
// Each front door lives in its own package under issuer/ (csrsigner for
// the certificates.k8s.io CertificateSigningRequest API, podcert for
// PodCertificateRequests, certmanager for cert-manager CertificateRequests)
// and implements Controller. The trust publisher (trustbundle/publish)
// runs on the same manager and cache, so meshca watches each kind once.
package kubesigner
