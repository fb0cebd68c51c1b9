package csrsigner_test

import (
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	certv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/issuer/csrsigner"
)

// istiod sends key encipherment for every key type: for an ECDSA key it is
// dropped (RFC 5480 §3), the request still succeeds, and an Event says so.
func TestSign_ECDSAFromIstiodDropsKeyEnciphermentWithEvent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	id := spiffeID("shop", "cart")
	before := time.Now().Truncate(time.Second)
	csr := waitIssued(t, h.create(t, id, csrOptions{}).Name, 10*time.Second)
	after := time.Now()

	certs := chain(t, csr)
	leaf := certs[0]
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, id, leaf.URIs[0].String())
	require.Empty(t, leaf.DNSNames)
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.IsCA)
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	require.LessOrEqual(t, life, time.Hour+10*time.Minute, "expirationSeconds 3600 (notBefore may be backdated)")
	require.False(t, leaf.NotAfter.Before(before.Add(time.Hour)), "notAfter %s", leaf.NotAfter)
	require.False(t, leaf.NotAfter.After(after.Add(time.Hour)), "notAfter %s", leaf.NotAfter)
	h.verify(t, certs)

	ev := waitEvent(t, csr, csrsigner.EventKeyEnciphermentDropped)
	require.Equal(t, "Normal", ev.Type)
	require.Contains(t, ev.Note, "keyEncipherment was not granted")
}

func TestSign_RSAKeepsKeyEncipherment(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	id := spiffeID("shop", "rsa")
	csr := waitIssued(t, h.create(t, id, csrOptions{key: rsaKey(t)}).Name, 10*time.Second)
	certs := chain(t, csr)
	require.Equal(t, id, certs[0].URIs[0].String())
	require.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, certs[0].KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, certs[0].ExtKeyUsage)
	h.verify(t, certs)
}

func TestSign_ClampsExpirationSecondsToMaxDuration(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{maxDuration: 20 * time.Minute})
	before := time.Now().Truncate(time.Second)
	csr := waitIssued(t, h.create(t, spiffeID("shop", "long"), csrOptions{expiration: 7200}).Name, 10*time.Second)
	after := time.Now()
	leaf := chain(t, csr)[0]
	require.False(t, leaf.NotAfter.Before(before.Add(20*time.Minute)), "notAfter %s", leaf.NotAfter)
	require.False(t, leaf.NotAfter.After(after.Add(20*time.Minute)), "notAfter %s, not clamped to 20m", leaf.NotAfter)
	ev := waitEvent(t, csr, csrsigner.EventDurationClamped)
	require.Contains(t, ev.Note, "expirationSeconds 7200 exceeds meshca's signers.csr.maxDuration; the certificate lasts at most 20m0s")
}

// The issue: "An unapproved CSR is left alone for 10 s." Meanwhile an
// approved request of the same signer is signed, so the controller was
// running all along; once approved, the first is signed too.
func TestUnapproved_LeftAloneFor10sThenSignedOnceApproved(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	csr := h.create(t, spiffeID("shop", "waiting"), csrOptions{unapproved: true})
	deadline := time.Now().Add(10 * time.Second)
	h.barrier(t)
	require.Never(t, func() bool {
		got := get(t, csr.Name)
		return got.ResourceVersion != csr.ResourceVersion || len(got.Status.Certificate) > 0 || len(got.Status.Conditions) > 0
	}, time.Until(deadline), 100*time.Millisecond, "an unapproved request was written")
	require.Zero(t, h.engine.signed(spiffeID("shop", "waiting")))
	waitIssued(t, decide(t, csr, certv1.CertificateApproved).Name, 10*time.Second)
}

func TestDenied_NeverSigned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	csr := decide(t, h.create(t, spiffeID("shop", "denied"), csrOptions{unapproved: true}), certv1.CertificateDenied)
	require.Eventually(t, func() bool { return h.outcomes(t, "denied") >= 1 }, 10*time.Second, 20*time.Millisecond)
	h.barrier(t)
	got := get(t, csr.Name)
	require.Equal(t, csr.ResourceVersion, got.ResourceVersion, "a denied request was written")
	require.Empty(t, got.Status.Certificate)
	require.Zero(t, h.engine.signed(spiffeID("shop", "denied")))
}

func TestRequesterNotAllowed_Failed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{allowed: []string{"system:serviceaccount:istio-system:istiod"}})
	csr := h.create(t, spiffeID("shop", "cart"), csrOptions{})
	c := waitFailed(t, csr.Name)
	require.Equal(t, csrsigner.ReasonRequesterNotAllowed, c.Reason)
	require.Contains(t, c.Message, "is not allowed by meshca's signers.csr.allowedRequesters")
	require.Contains(t, c.Message, h.signer)
	require.Zero(t, h.engine.signed(spiffeID("shop", "cart")))
}

func TestForeignTrustDomain_Failed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	csr := h.create(t, "spiffe://evil.example/ns/shop/sa/cart", csrOptions{})
	c := waitFailed(t, csr.Name)
	require.Equal(t, csrsigner.ReasonForeignTrustDomain, c.Reason)
	require.Contains(t, c.Message, `SPIFFE ID "spiffe://evil.example/ns/shop/sa/cart" is not in trust domain cluster.local`)
	require.Zero(t, h.engine.signed("spiffe://evil.example/ns/shop/sa/cart"))
}

func TestCertSignUsage_Failed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	csr := h.create(t, spiffeID("shop", "ca"), csrOptions{usages: append(istiodUsages[:4:4], certv1.UsageCertSign)})
	c := waitFailed(t, csr.Name)
	require.Equal(t, csrsigner.ReasonUsageNotAllowed, c.Reason)
	require.Contains(t, c.Message, `usage "cert sign" is not allowed for a workload certificate`)
}

// A CA outage is never a failure: the request stays untouched (no Failed
// condition) while the engine is unready, and is signed once it is back.
func TestUnreadyEngine_RequeuesThenSigns(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{closed: true})
	csr := h.create(t, spiffeID("shop", "outage"), csrOptions{})
	require.Eventually(t, func() bool { return h.outcomes(t, "pending") >= 3 }, 10*time.Second, 20*time.Millisecond, "not retried")
	got := get(t, csr.Name)
	require.Equal(t, csr.ResourceVersion, got.ResourceVersion, "written while the engine was unready")
	require.Nil(t, failedCondition(got))
	h.engine.closed.Store(false)
	waitIssued(t, csr.Name, 15*time.Second)
}

// Already-issued and failed requests are never signed again, also not by
// a restarted signer whose new cache replays them.
func TestRestart_NeverSignsAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	id := spiffeID("shop", "once")
	issued := waitIssued(t, h.create(t, id, csrOptions{}).Name, 10*time.Second)
	failed := h.create(t, "spiffe://other.example/ns/a/sa/b", csrOptions{})
	waitFailed(t, failed.Name)
	failed = get(t, failed.Name)
	require.Equal(t, 1, h.engine.signed(id))

	h.stop()
	h.start(t)
	h.barrier(t)
	require.Equal(t, 1, h.engine.signed(id))
	require.Equal(t, issued.ResourceVersion, get(t, issued.Name).ResourceVersion)
	require.Equal(t, failed.ResourceVersion, get(t, failed.Name).ResourceVersion)
}

// With several signer names the cache holds every request (no field
// selector): meshca signs those of its names and writes nothing to another
// signer's, even approved and from an allowed requester.
func TestSeveralSignerNames_SignsEachAndLeavesOthersAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{extraSigners: 1})
	other := fmt.Sprintf("other%d.example.com/signer", signerSeq.Add(1))
	foreign := h.create(t, spiffeID("shop", "foreign"), csrOptions{signer: other})
	first := waitIssued(t, h.create(t, spiffeID("shop", "first"), csrOptions{}).Name, 10*time.Second)
	second := waitIssued(t, h.create(t, spiffeID("shop", "second"), csrOptions{signer: h.extra[0]}).Name, 10*time.Second)
	h.verify(t, chain(t, first))
	h.verify(t, chain(t, second))
	got := get(t, foreign.Name)
	require.Equal(t, foreign.ResourceVersion, got.ResourceVersion, "another signer's request was written")
	require.Zero(t, h.engine.signed(spiffeID("shop", "foreign")))
}

// A status write that fails (here: the signer lacks the "sign" verb on its
// signer name, which the apiserver checks) is retried with the chain it
// already signed: one issuance per request, even across failed writes.
func TestStatusWriteFails_RetriedWithoutSigningAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	sa := fmt.Sprintf("csrsigner-%d", signerSeq.Add(1))
	cfg, _, err := kube.ClientAs(ctx, "default", sa)
	require.NoError(t, err)
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}}
	role, err = kube.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kube.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: sa},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: sa}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	h := newHarness(t, harnessOptions{config: cfg})
	id := spiffeID("shop", "retried")
	csr := h.create(t, id, csrOptions{})
	require.Eventually(t, func() bool { return h.outcomes(t, "error") >= 2 }, 10*time.Second, 20*time.Millisecond, "the write was not refused")
	require.Empty(t, get(t, csr.Name).Status.Certificate)
	require.Equal(t, 1, h.engine.signed(id))

	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, Verbs: []string{"sign"}, ResourceNames: []string{h.signer}})
	_, err = kube.Client.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	require.NoError(t, err)
	got := waitIssued(t, csr.Name, 15*time.Second)
	h.verify(t, chain(t, got))
	require.Equal(t, 1, h.engine.signed(id), "signed again after a failed write")
	waitEvent(t, got, csrsigner.EventKeyEnciphermentDropped)
}
