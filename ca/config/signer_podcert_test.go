package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/config"
)

const podCertBase = "root: {file: {rootCert: r.pem, rootKey: r.key}}\nkeyStore: {dir: keys}\nstore: {path: s.db}\nkubernetes: {kubeconfig: kc}\n"

func TestPodCertSigner_DefaultsToTheWorkloadSignerOfTheClusterTrustBundle(t *testing.T) {
	cfg, err := config.Parse([]byte(podCertBase + "trustBundle: {enabled: true}\nsigners: {podCertificates: {enabled: true}}\n"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	pc := cfg.Signers.PodCertificates
	require.Equal(t, "meshca.io/workload", pc.SignerName)
	require.Equal(t, cfg.TrustBundle.ClusterTrustBundles.SignerNames, []string{pc.SignerName}, "meshca publishes the ClusterTrustBundle of the pods' signer")
	require.Zero(t, pc.MaxDuration.Duration)
	require.Empty(t, pc.Profile)
	require.Empty(t, pc.UserAnnotations, "no unverifiedUserAnnotations key is recognised by default")

	cfg, err = config.Parse([]byte(podCertBase + "signers: {podCertificates: {enabled: true, signerName: example.com/pods, maxDuration: 2h, profile: classical, userAnnotations: [example.com/team]}}\n"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate(), "without trustBundle.enabled meshca publishes no bundle, so any signer is accepted")
	require.Equal(t, 2*time.Hour, cfg.Signers.PodCertificates.MaxDuration.Duration)
}

func TestPodCertSigner_ValidateNamesKeyAndFix(t *testing.T) {
	for extra, want := range map[string]string{
		"trustBundle: {enabled: true}\nsigners: {podCertificates: {enabled: true, signerName: example.com/pods}}": `signers.podCertificates.signerName: "example.com/pods" has no ClusterTrustBundle: add it to trustBundle.clusterTrustBundles.signerNames (now [meshca.io/workload])`,
		"signers: {podCertificates: {enabled: true, signerName: pods}}":                                           `signers.podCertificates.signerName: "pods" is not a signer name; use <domain>/<name>, e.g. meshca.io/workload`,
		"signers: {podCertificates: {enabled: true, signerName: kubernetes.io/pods}}":                             `signers.podCertificates.signerName: "kubernetes.io/pods" is reserved for Kubernetes' own signers (domain kubernetes.io)`,
		"signers: {podCertificates: {enabled: true, signerName: certs.k8s.io/pods}}":                              `signers.podCertificates.signerName: "certs.k8s.io/pods" is reserved for Kubernetes' own signers (domain k8s.io)`,
		"signers: {podCertificates: {enabled: true, maxDuration: 30m}}":                                           "signers.podCertificates.maxDuration: 30m0s is out of range; use 1h0m0s to 2184h0m0s",
		"signers: {podCertificates: {enabled: true, maxDuration: 92d}}":                                           "signers.podCertificates.maxDuration: 2208h0m0s is out of range",
		"signers: {podCertificates: {enabled: true, profile: quantum}}":                                           `signers.podCertificates.profile: "quantum" is not supported; use one of`,
		"intermediate: {profile: classical}\nsigners: {podCertificates: {enabled: true, profile: mldsa}}":         "signers.podCertificates.profile: ",
		"signers: {podCertificates: {enabled: true, userAnnotations: [team]}}":                                    `signers.podCertificates.userAnnotations[0]: "team" is not a domain-prefixed annotation key`,
		"signers: {podCertificates: {enabled: true, userAnnotations: [a.io/x, a.io/x]}}":                          `signers.podCertificates.userAnnotations[1]: "a.io/x" is listed twice`,
	} {
		cfg, err := config.Parse([]byte(podCertBase + extra))
		require.NoError(t, err, extra)
		require.ErrorContains(t, cfg.Validate(), want, extra)
	}
	// Disabled, nothing of it is checked.
	cfg, err := config.Parse([]byte(podCertBase + "signers: {podCertificates: {signerName: pods}}\n"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
}
