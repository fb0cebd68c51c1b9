package podcert_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/podcert"
)

// parseChain splits status.certificateChain into certificates.
func parseChain(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		require.Equal(t, "CERTIFICATE", b.Type)
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	require.Empty(t, rest, "nothing but CERTIFICATE blocks")
	return certs
}

// requireSVID checks an issued request: the X.509-SVID of the pod's
// ServiceAccount for the request's key, the lifetime in the API's bounds,
// the status times equal to the leaf's, beginRefreshAt at half the
// lifetime, and a chain (leaf + intermediates, no root) that verifies to
// the mesh root.
func requireSVID(t *testing.T, c *ca, got *certificatesv1.PodCertificateRequest, key crypto.Signer, wantKU x509.KeyUsage, maxLife time.Duration) *x509.Certificate {
	t.Helper()
	chain := parseChain(t, got.Status.CertificateChain)
	require.Len(t, chain, 2, "the leaf and meshca's intermediate; the root comes from the ClusterTrustBundle")
	leaf := chain[0]
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, "spiffe://"+trustDomain+"/ns/"+got.Namespace+"/sa/"+got.Spec.ServiceAccountName, leaf.URIs[0].String())
	require.Empty(t, leaf.DNSNames)
	require.Empty(t, leaf.Subject.CommonName)
	require.True(t, key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey), "issued to the request's key")
	require.Equal(t, wantKU, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.IsCA)

	require.True(t, got.Status.NotBefore.Time.Equal(leaf.NotBefore))
	require.True(t, got.Status.NotAfter.Time.Equal(leaf.NotAfter))
	require.WithinDuration(t, time.Now(), leaf.NotBefore, 5*time.Minute)
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	require.GreaterOrEqual(t, life, time.Hour)
	require.LessOrEqual(t, life, maxLife)
	require.LessOrEqual(t, life, time.Duration(*got.Spec.MaxExpirationSeconds)*time.Second)
	require.True(t, got.Status.BeginRefreshAt.Time.Equal(leaf.NotBefore.Add(life/2).Truncate(time.Second)),
		"beginRefreshAt %s is not half-way through %s..%s", got.Status.BeginRefreshAt, leaf.NotBefore, leaf.NotAfter)

	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	return leaf
}

func TestIssue_SVIDOfThePodsServiceAccountForEachKeyType(t *testing.T) {
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{})
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "shop"))
	w := newWorkload(t, "shop", "cart-1", "cart")

	rsaKey, err := rsa.GenerateKey(rand.Reader, 3072)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		key crypto.Signer
		ku  x509.KeyUsage
	}{
		"ECDSAP256": {p256(t), x509.KeyUsageDigitalSignature},
		"ECDSAP384": {p384, x509.KeyUsageDigitalSignature},
		"ED25519":   {edKey, x509.KeyUsageDigitalSignature},
		// keyEncipherment for RSA only (RFC 5480 §3, RFC 8410 §5).
		"RSA3072": {rsaKey, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
	} {
		t.Run(name, func(t *testing.T) {
			pcr := w.request(t, s.name, tc.key, nil)
			require.Equal(t, int32(86400), *pcr.Spec.MaxExpirationSeconds, "the apiserver's default")
			got, cond := waitFinished(t, s, pcr)
			require.Equal(t, "Issued", cond.Type, cond.Message)
			require.Equal(t, metav1.ConditionTrue, cond.Status)
			require.Equal(t, podcert.ReasonIssued, cond.Reason)
			require.Contains(t, cond.Message, "issued spiffe://cluster.local/ns/shop/sa/cart")
			require.Len(t, got.Status.Conditions, 1)
			requireSVID(t, c, got, tc.key, tc.ku, 24*time.Hour)
		})
	}
	require.Equal(t, 4, c.records(t, "podcertificate:shop/cart-1"), "each request is one audited issuance")
}

// maxExpirationSeconds is the longest lifetime a request accepts; meshca's
// own signers.podCertificates.maxDuration caps it further.
func TestIssue_HonoursMaxExpirationSecondsAndMaxDuration(t *testing.T) {
	c := newCA(t)
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "lifetimes"))
	w := newWorkload(t, "lifetimes", "api-1", "api")
	for name, tc := range map[string]struct {
		maxExpiration int32
		maxDuration   time.Duration
		want          time.Duration
	}{
		// The API's minimum: exactly an hour, no more and no less.
		"one hour":              {3600, 0, time.Hour},
		"two hours":             {7200, 0, 2 * time.Hour},
		"capped by maxDuration": {86400, 90 * time.Minute, 90 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			s := startSigner(t, c.rt.Authority, podcert.Options{SignerName: signerName(t), MaxDuration: tc.maxDuration})
			key := p256(t)
			pcr := w.request(t, s.name, key, func(sp *certificatesv1.PodCertificateRequestSpec) { sp.MaxExpirationSeconds = &tc.maxExpiration })
			got, cond := waitFinished(t, s, pcr)
			require.Equal(t, "Issued", cond.Type, cond.Message)
			leaf := requireSVID(t, c, got, key, x509.KeyUsageDigitalSignature, tc.want)
			require.Equal(t, tc.want, leaf.NotAfter.Sub(leaf.NotBefore))
		})
	}
}

// A request that does not match the live pod and ServiceAccount is stale:
// it is denied, and nothing is signed.
func TestDeny_StaleRequests(t *testing.T) {
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{})
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "stale"))
	w := newWorkload(t, "stale", "web-1", "web")
	other := newWorkload(t, "stale", "web-2", "other")
	for name, tc := range map[string]struct {
		mutate  func(*certificatesv1.PodCertificateRequestSpec)
		reason  string
		message string
	}{
		"pod UID mismatch": {func(sp *certificatesv1.PodCertificateRequestSpec) { sp.PodUID = "0b7c5e2e-6d4f-4f39-9a53-000000000001" },
			podcert.ReasonPodMismatch, "pod stale/web-1 has UID " + string(w.pod.UID) + ", not the request's 0b7c5e2e-6d4f-4f39-9a53-000000000001: a stale request gets no certificate"},
		"pod gone": {func(sp *certificatesv1.PodCertificateRequestSpec) { sp.PodName = "web-0" },
			podcert.ReasonPodNotFound, "pod stale/web-0 does not exist: a stale request gets no certificate"},
		"another ServiceAccount": {func(sp *certificatesv1.PodCertificateRequestSpec) {
			sp.ServiceAccountName, sp.ServiceAccountUID = other.sa.Name, other.sa.UID
		}, podcert.ReasonPodMismatch, "pod stale/web-1 runs as ServiceAccount web, not the request's other"},
		"another node": {func(sp *certificatesv1.PodCertificateRequestSpec) {
			sp.NodeName, sp.NodeUID = types.NodeName(other.node.Name), other.node.UID
		},
			podcert.ReasonPodMismatch, "pod stale/web-1 is on node " + w.node.Name + ", not the request's " + other.node.Name},
		"node UID mismatch": {func(sp *certificatesv1.PodCertificateRequestSpec) {
			sp.NodeUID = "0b7c5e2e-6d4f-4f39-9a53-000000000003"
		},
			podcert.ReasonNodeMismatch, "node " + w.node.Name + " has UID " + string(w.node.UID) + ", not the request's 0b7c5e2e-6d4f-4f39-9a53-000000000003: a stale request gets no certificate"},
		"ServiceAccount recreated": {func(sp *certificatesv1.PodCertificateRequestSpec) {
			sp.ServiceAccountUID = "0b7c5e2e-6d4f-4f39-9a53-000000000002"
		},
			podcert.ReasonServiceAccountMismatch, "ServiceAccount stale/web has UID " + string(w.sa.UID) + ", not the request's 0b7c5e2e-6d4f-4f39-9a53-000000000002: it was recreated"},
	} {
		t.Run(name, func(t *testing.T) {
			pcr := w.request(t, s.name, p256(t), tc.mutate)
			got, cond := waitFinished(t, s, pcr)
			require.Equal(t, "Denied", cond.Type, cond.Message)
			require.Equal(t, tc.reason, cond.Reason)
			require.Equal(t, tc.message, cond.Message)
			require.Empty(t, got.Status.CertificateChain)
			require.Nil(t, got.Status.NotAfter)
		})
	}
	require.Zero(t, c.records(t, "podcertificate:"), "nothing was signed")
}

// The API lets the kubelet make an ECDSA P-521 key, which meshca's policy
// does not sign: the request is denied with the API's UnsupportedKeyType
// and a suggestion.
func TestDeny_UnsupportedKeyType(t *testing.T) {
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{})
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "keys"))
	w := newWorkload(t, "keys", "db-1", "db")
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	got, cond := waitFinished(t, s, w.request(t, s.name, p521, nil))
	require.Equal(t, "Denied", cond.Type, cond.Message)
	require.Equal(t, "UnsupportedKeyType", cond.Reason)
	require.Contains(t, cond.Message, "P-521 is not supported")
	require.Contains(t, cond.Message, "use keyType ECDSAP256")
	require.Empty(t, got.Status.CertificateChain)
	require.Zero(t, c.records(t, "podcertificate:"))
}

// unverifiedUserAnnotations keys meshca does not recognise deny the
// request (the API asks signers to); configured keys are accepted.
func TestDeny_UnknownUserAnnotations(t *testing.T) {
	c := newCA(t)
	s := startSigner(t, c.rt.Authority, podcert.Options{UserAnnotations: []string{"meshca.io/purpose"}})
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "annotations"))
	w := newWorkload(t, "annotations", "job-1", "job")

	got, cond := waitFinished(t, s, w.request(t, s.name, p256(t), func(sp *certificatesv1.PodCertificateRequestSpec) {
		sp.UnverifiedUserAnnotations = map[string]string{"example.com/ttl": "90d", "meshca.io/purpose": "batch"}
	}))
	require.Equal(t, "Denied", cond.Type, cond.Message)
	require.Equal(t, "InvalidUnverifiedUserAnnotations", cond.Reason)
	require.Equal(t, `spec.unverifiedUserAnnotations has keys meshca does not recognise: "example.com/ttl" (meshca recognises meshca.io/purpose; signers.podCertificates.userAnnotations)`, cond.Message)
	require.Empty(t, got.Status.CertificateChain)

	key := p256(t)
	got, cond = waitFinished(t, s, w.request(t, s.name, key, func(sp *certificatesv1.PodCertificateRequestSpec) {
		sp.UnverifiedUserAnnotations = map[string]string{"meshca.io/purpose": "batch"}
	}))
	require.Equal(t, "Issued", cond.Type, cond.Message)
	requireSVID(t, c, got, key, x509.KeyUsageDigitalSignature, 24*time.Hour)
}

// A CA that cannot sign (no material yet: a Vault or CA outage) leaves the
// request pending, retried with backoff, never Failed; it is issued once
// the CA is ready.
func TestPending_UnreadyEngineThenIssued(t *testing.T) {
	c := newCA(t)
	pol, err := authority.PolicyFromConfig(c.cfg)
	require.NoError(t, err)
	unready := authority.New(nil, pol, c.rt.Store, authority.WithAudit(audit.New(slog.New(slog.DiscardHandler))))
	s := startSigner(t, unready, podcert.Options{})
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "outage"))
	w := newWorkload(t, "outage", "pay-1", "pay")
	key := p256(t)
	pcr := w.request(t, s.name, key, nil)

	// Retried with backoff: several pending reconciles, and nothing written.
	require.Eventually(t, func() bool { return s.outcomes(t, "pending") >= 3 }, 20*time.Second, 20*time.Millisecond, s.logs.String())
	now, err := kube.Client.CertificatesV1().PodCertificateRequests(pcr.Namespace).Get(ctx, pcr.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, pcr.ResourceVersion, now.ResourceVersion, "a pending request is not written")
	require.Empty(t, now.Status.Conditions)
	require.Zero(t, s.outcomes(t, "failed"))
	require.Contains(t, s.logs.String(), "the CA has no signing material yet")

	unready.SetMaterial(c.rt.Authority.Material())
	got, cond := waitFinished(t, s, pcr)
	require.Equal(t, "Issued", cond.Type, cond.Message)
	requireSVID(t, c, got, key, x509.KeyUsageDigitalSignature, 24*time.Hour)
}

// A finished request is never signed again, e.g. when a restarted signer
// lists it from a fresh cache; nor is a request for another signer
// touched.
func TestIdempotent_FinishedAndForeignRequestsAreLeftAlone(t *testing.T) {
	c := newCA(t)
	name := signerName(t)
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "again"))
	w := newWorkload(t, "again", "svc-1", "svc")

	first := startSigner(t, c.rt.Authority, podcert.Options{SignerName: name})
	issued, cond := waitFinished(t, first, w.request(t, name, p256(t), nil))
	require.Equal(t, "Issued", cond.Type)
	denied, cond := waitFinished(t, first, w.request(t, name, p256(t), func(sp *certificatesv1.PodCertificateRequestSpec) { sp.PodUID = "0b7c5e2e-6d4f-4f39-9a53-000000000003" }))
	require.Equal(t, "Denied", cond.Type)
	foreign := w.request(t, "example.com/other", p256(t), nil)
	require.Equal(t, 1, c.records(t, "podcertificate:again/"))

	// A second signer (a restart: a fresh cache lists both requests).
	second := startSigner(t, c.rt.Authority, podcert.Options{SignerName: name})
	require.Eventually(t, func() bool { return second.outcomes(t, "ignored") >= 2 }, 20*time.Second, 20*time.Millisecond, second.logs.String())
	for _, want := range []*certificatesv1.PodCertificateRequest{issued, denied, foreign} {
		got, err := kube.Client.CertificatesV1().PodCertificateRequests(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, want.ResourceVersion, got.ResourceVersion, "%s was written again", want.Name)
	}
	require.Empty(t, foreign.Status.Conditions)
	require.Zero(t, second.outcomes(t, "issued"))
	require.Zero(t, second.outcomes(t, "denied"))
	require.Equal(t, 1, c.records(t, "podcertificate:again/"), "nothing was signed again")
	var n int
	require.NoError(t, c.rt.Store.ListIssuances(ctx, func(store.Issuance) bool { n++; return true }))
	require.Equal(t, 1, n)
}

// kube-apiserver refuses an issued status whose notBefore is more than 5
// minutes from its clock: the request fails with the apiserver's reason
// after one signature, instead of being signed again and again.
func TestFail_CertificateTheAPIServerRefusesIsSignedOnce(t *testing.T) {
	c := newCA(t)
	ahead := func() time.Time { return time.Now().Add(10 * time.Minute) }
	pol := policy.New(policy.Options{TrustDomain: trustDomain, DefaultTTL: c.cfg.Issuance.DefaultCertTTL.Duration, MaxTTL: c.cfg.Issuance.MaxCertTTL.Duration, Now: ahead})
	skewed := authority.New(c.rt.Authority.Material(), pol, c.rt.Store,
		authority.WithAudit(audit.New(slog.New(slog.DiscardHandler))), authority.WithClock(ahead))
	s := startSigner(t, skewed, podcert.Options{})
	ctx := context.Background()
	require.NoError(t, kube.CreateNamespace(ctx, "skew"))
	w := newWorkload(t, "skew", "clock-1", "clock")
	got, cond := waitFinished(t, s, w.request(t, s.name, p256(t), nil))
	require.Equal(t, "Failed", cond.Type, cond.Message)
	require.Equal(t, podcert.ReasonCertificateRejected, cond.Reason)
	require.Contains(t, cond.Message, "must be set to within 5 minutes of kube-apiserver's current time")
	require.Empty(t, got.Status.CertificateChain)
	require.Equal(t, 1, c.records(t, "podcertificate:skew/clock-1"))
	// The outcome is counted after the status write seen above.
	require.Eventually(t, func() bool { return s.outcomes(t, "failed") == 1 }, 5*time.Second, 10*time.Millisecond,
		"failed outcomes: %v", s.outcomes(t, "failed"))
}

// signerRole is meshca's RBAC for the signer (deploy/rbac/podcert-signer.yaml)
// for signer, bound to ServiceAccount ns/sa; podsGet false leaves out the
// pods rule.
func signerRole(signer, ns, sa string, podsGet bool) string {
	pods := ""
	if podsGet {
		pods = "  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [get]\n"
	}
	return `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ` + sa + `}
rules:
  - apiGroups: [certificates.k8s.io]
    resources: [podcertificaterequests]
    verbs: [get, list, watch]
  - apiGroups: [certificates.k8s.io]
    resources: [podcertificaterequests/status]
    verbs: [update]
  - apiGroups: [certificates.k8s.io]
    resources: [signers]
    verbs: [sign]
    resourceNames: [` + signer + `]
  - apiGroups: [""]
    resources: [serviceaccounts, nodes]
    verbs: [get]
` + pods + `---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ` + sa + `}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ` + sa + `}
subjects: [{kind: ServiceAccount, name: ` + sa + `, namespace: ` + ns + `}]
`
}

// A pod that cannot be read (here RBAC forbids it; an apiserver outage is
// the same) is no verdict on the request: it stays pending, and is issued
// once the pod can be read.
func TestPending_PodUnreadableThenIssued(t *testing.T) {
	c := newCA(t)
	ctx := context.Background()
	name := signerName(t)
	require.NoError(t, kube.CreateNamespace(ctx, "unreadable"))
	_, err := kube.ApplyYAML(ctx, []byte(signerRole(name, "unreadable", "signer-no-pods", false)))
	require.NoError(t, err)
	rc, _, err := kube.ClientAs(ctx, "unreadable", "signer-no-pods")
	require.NoError(t, err)
	s := startSignerAs(t, rc, c.rt.Authority, podcert.Options{SignerName: name})
	w := newWorkload(t, "unreadable", "ui-1", "ui")
	key := p256(t)
	pcr := w.request(t, name, key, nil)

	require.Eventually(t, func() bool { return s.outcomes(t, "pending") >= 2 }, 20*time.Second, 20*time.Millisecond, s.logs.String())
	now, err := kube.Client.CertificatesV1().PodCertificateRequests(pcr.Namespace).Get(ctx, pcr.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, pcr.ResourceVersion, now.ResourceVersion, "a pending request is not written")
	require.Zero(t, s.outcomes(t, "denied"))
	require.Contains(t, s.logs.String(), `reading pod unreadable/ui-1: pods \"ui-1\" is forbidden`)

	_, err = kube.ApplyYAML(ctx, []byte(signerRole(name, "unreadable", "signer-no-pods", true)))
	require.NoError(t, err)
	got, cond := waitFinished(t, s, pcr)
	require.Equal(t, "Issued", cond.Type, cond.Message)
	requireSVID(t, c, got, key, x509.KeyUsageDigitalSignature, 24*time.Hour)
}

// A status write that fails (here RBAC lets the signer read requests but
// not sign for its signerName, so kube-apiserver refuses the status; an
// admission policy or an apiserver error is the same) is retried with the
// certificate already signed, not with a new one: one issuance per
// request, however many retries it takes. Once the write is allowed, that
// certificate is the one delivered.
func TestIssued_AFailedStatusWriteIsRetriedWithoutSigningAgain(t *testing.T) {
	c := newCA(t)
	ctx := context.Background()
	name := signerName(t)
	require.NoError(t, kube.CreateNamespace(ctx, "unsigned"))
	role := signerRole(name, "unsigned", "signer-no-sign", true)
	noSign := strings.Replace(role, "verbs: [sign]", "verbs: [get]", 1)
	require.NotEqual(t, role, noSign)
	_, err := kube.ApplyYAML(ctx, []byte(noSign))
	require.NoError(t, err)
	rc, _, err := kube.ClientAs(ctx, "unsigned", "signer-no-sign")
	require.NoError(t, err)
	s := startSignerAs(t, rc, c.rt.Authority, podcert.Options{SignerName: name})
	w := newWorkload(t, "unsigned", "us-1", "us")
	key := p256(t)
	pcr := w.request(t, name, key, nil)

	require.Eventually(t, func() bool { return s.outcomes(t, "error") >= 3 }, 30*time.Second, 20*time.Millisecond, s.logs.String())
	require.Equal(t, 1, c.records(t, "podcertificate:unsigned/us-1"), "one issuance for the request, however many retries")

	_, err = kube.ApplyYAML(ctx, []byte(role))
	require.NoError(t, err)
	got, cond := waitFinished(t, s, pcr)
	require.Equal(t, "Issued", cond.Type, cond.Message)
	leaf := requireSVID(t, c, got, key, x509.KeyUsageDigitalSignature, 24*time.Hour)
	require.Equal(t, 1, c.records(t, "podcertificate:unsigned/us-1"))
	var serial string
	require.NoError(t, c.rt.Store.ListIssuances(ctx, func(r store.Issuance) bool {
		if r.Requester == "podcertificate:unsigned/us-1" {
			serial = r.Serial
		}
		return true
	}))
	require.Equal(t, serial, hex.EncodeToString(leaf.SerialNumber.Bytes()), "the certificate delivered is the one recorded")
}
