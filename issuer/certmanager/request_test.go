package certmanager_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/issuer/certmanager"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/test/kubeenv"
)

var svidUsages = []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth, cmapi.UsageClientAuth}

// verifyIssued checks what every issued request must hold: leaf and
// intermediates without the root in status.certificate, the root in
// status.ca, a chain that verifies to the mesh root, the exact identity,
// and no failureTime.
func verifyIssued(t *testing.T, h *harness, got *cmapi.CertificateRequest, id string) *x509.Certificate {
	t.Helper()
	c := readyCondition(got)
	require.Equal(t, cmmeta.ConditionTrue, c.Status)
	require.Nil(t, got.Status.FailureTime)
	chain := parseChain(t, got.Status.Certificate)
	require.Len(t, chain, 2, "leaf and intermediate, no root")
	for _, cert := range chain {
		require.False(t, cert.IsCA && string(cert.RawIssuer) == string(cert.RawSubject), "no self-signed root in status.certificate")
	}
	require.Equal(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.ca.root.Raw}), got.Status.CA, "status.ca is the root")
	leaf := chain[0]
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	_, err := leaf.Verify(x509.VerifyOptions{Roots: h.ca.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err, "chain verifies to the mesh root")
	require.Len(t, leaf.URIs, 1)
	require.Equal(t, id, leaf.URIs[0].String())
	require.Empty(t, leaf.DNSNames)
	require.False(t, leaf.IsCA)
	return leaf
}

func TestRequest_IssuedWithRequestedUsagesDurationAndIdentity(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)

	before := time.Now().Add(-time.Second).Truncate(time.Second)
	cr := createRequest(t, crSpec{ns: ns, name: "web", uri: spiffeID(ns, "web"), usages: svidUsages,
		duration: 3 * time.Hour, issuer: meshIssuerRef("mesh"), approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonIssued)
	leaf := verifyIssued(t, h, got, spiffeID(ns, "web"))

	// ECDSA: keyEncipherment is dropped (RFC 5480 §3) and an Event says so.
	require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	// Validity: the requested 3h from now, notBefore backdated by the
	// policy's clock-skew allowance.
	require.Equal(t, 3*time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))
	require.False(t, leaf.NotBefore.Before(before.Add(-policy.Backdate)), "notBefore %s", leaf.NotBefore)
	require.WithinDuration(t, time.Now().Add(3*time.Hour), leaf.NotAfter, 10*time.Second)
	waitEvent(t, got, "KeyEnciphermentDropped", "keyEncipherment was not granted")

	// Every status field meshca wrote is owned by field manager meshca,
	// applied on the status subresource.
	var applied bool
	for _, mf := range got.ManagedFields {
		if mf.Manager == "meshca" {
			require.Equal(t, metav1.ManagedFieldsOperationApply, mf.Operation)
			require.Equal(t, "status", mf.Subresource)
			applied = true
		}
	}
	require.True(t, applied, "managedFields %+v", got.ManagedFields)

	// Finished requests are never touched again.
	signs := h.eng.signed(ns)
	got.Annotations = map[string]string{"poke": "1"}
	require.NoError(t, env.CtrlClient.Update(t.Context(), got))
	rv := got.ResourceVersion
	sentinel := createRequest(t, crSpec{ns: ns, name: "sentinel", uri: spiffeID(ns, "s"), issuer: meshIssuerRef("mesh"), approve: true})
	waitRequest(t, sentinel, cmapi.CertificateRequestReasonIssued)
	require.Equal(t, rv, getRequest(t, cr).ResourceVersion)
	require.Equal(t, signs+1, h.eng.signed(ns), "only the sentinel was signed")
}

func TestRequest_DefaultUsagesAndDurationClampedByPolicyAndIssuer(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	capped := createIssuer(t, ns, "capped", v1alpha1.MeshIssuerSpec{MaxDuration: &metav1.Duration{Duration: 2 * time.Hour}})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	waitIssuer(t, capped, v1alpha1.ReasonChecked)

	// No usages, no duration: cert-manager's defaults (digital signature,
	// key encipherment; 90 days), clamped to issuance.maxCertTTL (48h).
	cr := createRequest(t, crSpec{ns: ns, name: "rsa", uri: spiffeID(ns, "rsa"), key: rsaKey(t), issuer: meshIssuerRef("mesh"), approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonIssued)
	leaf := verifyIssued(t, h, got, spiffeID(ns, "rsa"))
	require.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, leaf.KeyUsage)
	require.Empty(t, leaf.ExtKeyUsage, "cert-manager's default usages carry no EKU")
	require.Equal(t, h.ca.maxTTL+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))
	waitEvent(t, got, "DurationClamped", "policy's maximum")

	// The issuer's maxDuration clamps below the policy.
	cr = createRequest(t, crSpec{ns: ns, name: "capped", uri: spiffeID(ns, "capped"), duration: 10 * time.Hour,
		usages: svidUsages, issuer: meshIssuerRef("capped"), approve: true})
	leaf = verifyIssued(t, h, waitRequest(t, cr, cmapi.CertificateRequestReasonIssued), spiffeID(ns, "capped"))
	require.Equal(t, 2*time.Hour+policy.Backdate, leaf.NotAfter.Sub(leaf.NotBefore))
}

func TestRequest_MeshClusterIssuerGivesOnlyIdentitiesOfTheRequestsNamespace(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	other := namespace(t)
	ci := &v1alpha1.MeshClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "mesh-" + ns}, Spec: v1alpha1.MeshIssuerSpec{Profile: string(profile.Catalyst)}}
	require.NoError(t, env.CtrlClient.Create(t.Context(), ci))
	waitIssuer(t, ci, v1alpha1.ReasonChecked)
	ref := cmmeta.IssuerReference{Group: v1alpha1.Group, Kind: v1alpha1.KindMeshClusterIssuer, Name: ci.Name}

	cr := createRequest(t, crSpec{ns: ns, name: "ok", uri: spiffeID(ns, "api"), usages: svidUsages, issuer: ref, approve: true})
	verifyIssued(t, h, waitRequest(t, cr, cmapi.CertificateRequestReasonIssued), spiffeID(ns, "api"))

	// Another namespace's identity, a foreign trust domain, no URI SAN.
	for name, uri := range map[string]string{
		"other-ns": spiffeID(other, "api"),
		"foreign":  "spiffe://evil.example/ns/" + ns + "/sa/api",
		"not-k8s":  "spiffe://" + trustDomain + "/workload/api",
	} {
		cr := createRequest(t, crSpec{ns: ns, name: name, uri: uri, issuer: ref, approve: true})
		got := waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
		require.NotNil(t, got.Status.FailureTime, name)
		require.Empty(t, got.Status.Certificate, name)
		want := map[string]string{
			"other-ns": "is not an identity of the request's namespace; it must be spiffe://cluster.local/ns/" + ns + "/sa/<name>",
			"foreign":  "foreign trust domain",
			"not-k8s":  "is not an identity of the request's namespace",
		}[name]
		require.Contains(t, readyCondition(got).Message, want, name)
	}
}

func TestRequest_OtherIssuerGroupsAreIgnoredAndNothingIsWritten(t *testing.T) {
	start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)

	ignored := reconciles(t, certmanager.RequestControllerName, "ignored")
	var foreign []*cmapi.CertificateRequest
	for name, ref := range map[string]cmmeta.IssuerReference{
		"cert-manager": {Group: "cert-manager.io", Kind: "Issuer", Name: "mesh"},
		"no-group":     {Kind: v1alpha1.KindMeshIssuer, Name: "mesh"},
		"suffix":       {Group: v1alpha1.Group + ".evil", Kind: v1alpha1.KindMeshIssuer, Name: "mesh"},
		"case":         {Group: "Issuer.meshca.io", Kind: v1alpha1.KindMeshIssuer, Name: "mesh"},
	} {
		foreign = append(foreign, createRequest(t, crSpec{ns: ns, name: name, uri: spiffeID(ns, name), issuer: ref, approve: true}))
	}
	denied := createRequest(t, crSpec{ns: ns, name: "denied-foreign", uri: spiffeID(ns, "x"), issuer: cmmeta.IssuerReference{Group: "cert-manager.io", Name: "x"}, deny: true})
	foreign = append(foreign, denied)
	rvs := map[string]string{}
	for _, cr := range foreign {
		rvs[cr.Name] = cr.ResourceVersion
	}
	// The controller has reconciled every version of them (creation and
	// approval: two each) and a request of ours created afterwards is
	// issued; then nothing of theirs has changed.
	sentinel := createRequest(t, crSpec{ns: ns, name: "ours", uri: spiffeID(ns, "ours"), issuer: meshIssuerRef("mesh"), approve: true})
	waitRequest(t, sentinel, cmapi.CertificateRequestReasonIssued)
	require.Eventually(t, func() bool {
		return reconciles(t, certmanager.RequestControllerName, "ignored") >= ignored+float64(2*len(foreign))
	}, 10*time.Second, 20*time.Millisecond, "the controller did not see every foreign request")
	for _, cr := range foreign {
		got := getRequest(t, cr)
		require.Equal(t, rvs[cr.Name], got.ResourceVersion, "%s was written: %+v", cr.Name, got.Status)
	}
	var evs eventsv1.EventList
	require.NoError(t, env.CtrlClient.List(t.Context(), &evs, client.InNamespace(ns)))
	for _, e := range evs.Items {
		require.Equal(t, "ours", e.Regarding.Name, "no Event about another issuer's request: %+v", e)
	}
}

func TestRequest_UnapprovedIsLeftAloneThenSignedOnApproval(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	cr := createRequest(t, crSpec{ns: ns, name: "wait", uri: spiffeID(ns, "wait"), issuer: meshIssuerRef("mesh")})
	sentinel := createRequest(t, crSpec{ns: ns, name: "sentinel", uri: spiffeID(ns, "s"), issuer: meshIssuerRef("mesh"), approve: true})
	waitRequest(t, sentinel, cmapi.CertificateRequestReasonIssued)
	require.Equal(t, cr.ResourceVersion, getRequest(t, cr).ResourceVersion, "an unapproved request is not written")
	require.Equal(t, 1, h.eng.signed(ns))

	setCondition(t, cr, cmapi.CertificateRequestConditionApproved, "approved later")
	verifyIssued(t, h, waitRequest(t, cr, cmapi.CertificateRequestReasonIssued), spiffeID(ns, "wait"))
}

func TestRequest_DeniedGetsReadyFalseDeniedAndIsNeverSigned(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	cr := createRequest(t, crSpec{ns: ns, name: "no", uri: spiffeID(ns, "no"), issuer: cmmeta.IssuerReference{Group: v1alpha1.Group, Name: "mesh"}, deny: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonDenied)
	c := readyCondition(got)
	require.Equal(t, cmmeta.ConditionFalse, c.Status)
	require.Contains(t, c.Message, "denied")
	require.NotNil(t, got.Status.FailureTime)
	require.True(t, stamp.Equal(got.Status.FailureTime.Time), "failureTime %s is the controller's clock", got.Status.FailureTime)
	require.True(t, stamp.Equal(c.LastTransitionTime.Time), "lastTransitionTime %s is the controller's clock", c.LastTransitionTime)
	require.Empty(t, got.Status.Certificate)
	require.Zero(t, h.eng.signed(ns))
}

func TestRequest_GarbageRequestFails(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	for name, req := range map[string][]byte{
		"garbage":  []byte("this is not a CSR"),
		"bad-pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}),
		"wrong-pm": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}),
	} {
		cr := createRequest(t, crSpec{ns: ns, name: name, request: req, issuer: meshIssuerRef("mesh"), approve: true})
		got := waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
		require.Contains(t, readyCondition(got).Message, "spec.request is not a valid CSR", name)
		require.NotNil(t, got.Status.FailureTime, name)
		require.Empty(t, got.Status.Certificate, name)
	}
	require.Zero(t, h.eng.signed(ns))

	// Our group with a kind meshca does not serve can never be signed.
	cr := createRequest(t, crSpec{ns: ns, name: "kind", uri: spiffeID(ns, "k"),
		issuer: cmmeta.IssuerReference{Group: v1alpha1.Group, Kind: "Issuer", Name: "mesh"}, approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
	require.Equal(t, `spec.issuerRef.kind "Issuer" is not MeshIssuer or MeshClusterIssuer`, readyCondition(got).Message)
	require.NotNil(t, got.Status.FailureTime)
}

func TestRequest_UsagesOrBasicConstraintsContradictingTheSpecFail(t *testing.T) {
	start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)

	// The CSR encodes server auth and client auth; the spec asks for the defaults.
	key := ecKey(t)
	csr := certificateCSR(t, key, &cmapi.Certificate{Spec: cmapi.CertificateSpec{URIs: []string{spiffeID(ns, "u")}, Usages: svidUsages}})
	cr := createRequest(t, crSpec{ns: ns, name: "usages", request: csr, issuer: meshIssuerRef("mesh"), approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
	require.Contains(t, readyCondition(got).Message, "do not match the expected ExtKeyUsages")

	// The CSR asks for CA:true; the spec does not.
	csr = certificateCSR(t, key, &cmapi.Certificate{Spec: cmapi.CertificateSpec{URIs: []string{spiffeID(ns, "u")}, IsCA: true}})
	cr = createRequest(t, crSpec{ns: ns, name: "bc", request: csr, issuer: meshIssuerRef("mesh"), approve: true})
	got = waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
	require.Contains(t, readyCondition(got).Message, "IsCA true does not match expected value false")

	// A usage a workload certificate never has.
	cr = createRequest(t, crSpec{ns: ns, name: "codesign", uri: spiffeID(ns, "u"), usages: []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageCodeSigning}, issuer: meshIssuerRef("mesh"), approve: true})
	got = waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
	require.Contains(t, readyCondition(got).Message, `usage "code signing" is not allowed`)
}

func TestRequest_IsCAFailsUnlessTheIssuerAllowsAndEvenThenTheEngineRefuses(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	ca := createIssuer(t, ns, "ca", v1alpha1.MeshIssuerSpec{AllowCA: true})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	waitIssuer(t, ca, v1alpha1.ReasonChecked)

	cr := createRequest(t, crSpec{ns: ns, name: "sub", uri: spiffeID(ns, "sub"), isCA: true, issuer: meshIssuerRef("mesh"), approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
	require.Contains(t, readyCondition(got).Message, "spec.isCA is set but MeshIssuer "+ns+"/mesh does not allow CA certificates (its spec.allowCA is false)")
	require.NotNil(t, got.Status.FailureTime)
	require.Zero(t, h.eng.signed(ns), "refused before the engine")

	cr = createRequest(t, crSpec{ns: ns, name: "sub2", uri: spiffeID(ns, "sub"), isCA: true, issuer: meshIssuerRef("ca"), approve: true})
	got = waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
	require.Contains(t, readyCondition(got).Message, "meshca refused to sign a CA certificate (spec.isCA): CSR requests certificate or CRL signing")
	require.NotNil(t, got.Status.FailureTime)
	require.Empty(t, got.Status.Certificate)
}

func TestRequest_MissingIssuerIsPendingThenIssuedOnceCreated(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	cr := createRequest(t, crSpec{ns: ns, name: "early", uri: spiffeID(ns, "early"), issuer: meshIssuerRef("later"), approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonPending)
	require.Contains(t, readyCondition(got).Message, `MeshIssuer "`+ns+`/later" does not exist`)
	require.Nil(t, got.Status.FailureTime)

	createIssuer(t, ns, "later", v1alpha1.MeshIssuerSpec{})
	verifyIssued(t, h, waitRequest(t, cr, cmapi.CertificateRequestReasonIssued), spiffeID(ns, "early"))
}

// watchNeverFailed polls cr until stop is closed and reports whether it
// was ever seen Failed.
func watchNeverFailed(t *testing.T, cr *cmapi.CertificateRequest, stop <-chan struct{}) <-chan string {
	out := make(chan string, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-stop:
				return
			default:
			}
			got := &cmapi.CertificateRequest{}
			if err := env.CtrlClient.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err == nil {
				if c := readyCondition(got); c != nil && c.Reason == cmapi.CertificateRequestReasonFailed {
					out <- c.Message
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return out
}

func TestRequest_UnreadyEngineIsPendingNeverFailed(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)

	// An outage between two health checks: Sign answers Unavailable.
	h.eng.signDown.Store(true)
	cr := createRequest(t, crSpec{ns: ns, name: "outage", uri: spiffeID(ns, "outage"), issuer: meshIssuerRef("mesh"), approve: true})
	stop := make(chan struct{})
	failed := watchNeverFailed(t, cr, stop)
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonPending)
	require.Contains(t, readyCondition(got).Message, "meshca cannot sign right now, retrying: ")
	require.Contains(t, readyCondition(got).Message, "no signing material")
	require.Nil(t, got.Status.FailureTime)
	waitEvent(t, got, "Pending", "cannot sign right now")

	// The health check notices too: the issuer turns Pending, and a new
	// request waits for it.
	h.eng.checkDown.Store(true)
	c := waitIssuer(t, iss, v1alpha1.ReasonPending)
	require.Equal(t, metav1.ConditionFalse, c.Status)
	require.Contains(t, c.Message, "meshca cannot sign right now: ")
	cr2 := createRequest(t, crSpec{ns: ns, name: "outage2", uri: spiffeID(ns, "outage2"), issuer: meshIssuerRef("mesh"), approve: true})
	failed2 := watchNeverFailed(t, cr2, stop)
	got = waitRequest(t, cr2, cmapi.CertificateRequestReasonPending)
	require.Contains(t, readyCondition(got).Message, "MeshIssuer "+ns+"/mesh is not ready (Pending: meshca cannot sign right now")

	// The CA is back: both are issued, neither was ever Failed.
	h.eng.signDown.Store(false)
	h.eng.checkDown.Store(false)
	verifyIssued(t, h, waitRequest(t, cr, cmapi.CertificateRequestReasonIssued), spiffeID(ns, "outage"))
	verifyIssued(t, h, waitRequest(t, cr2, cmapi.CertificateRequestReasonIssued), spiffeID(ns, "outage2"))
	close(stop)
	require.Empty(t, <-failed)
	require.Empty(t, <-failed2)
}

// waitEvent waits for an events.k8s.io Event about cr with reason whose note contains note.
func waitEvent(t *testing.T, cr *cmapi.CertificateRequest, reason, note string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var evs eventsv1.EventList
		if err := env.CtrlClient.List(t.Context(), &evs, client.InNamespace(cr.Namespace)); err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == cr.Name && e.Reason == reason && e.Type != "" && strings.Contains(e.Note, note) {
				return e.ReportingController == "meshca" && (e.Type == corev1.EventTypeWarning || e.Type == corev1.EventTypeNormal)
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "no Event %s %q about %s", reason, note, cr.Name)
}

func TestRequest_WhatThePolicyRefusesFailsAndAnIssuerCannotWidenIt(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	for name, crt := range map[string]cmapi.CertificateSpec{
		"dns": {URIs: []string{spiffeID(ns, "web")}, DNSNames: []string{"web." + ns + ".svc"}},
		"cn":  {URIs: []string{spiffeID(ns, "web")}, CommonName: "web"},
	} {
		csr := certificateCSR(t, ecKey(t), &cmapi.Certificate{Spec: crt})
		cr := createRequest(t, crSpec{ns: ns, name: name, request: csr, issuer: meshIssuerRef("mesh"), approve: true})
		got := waitRequest(t, cr, cmapi.CertificateRequestReasonFailed)
		require.NotNil(t, got.Status.FailureTime, name)
		want := map[string]string{
			"dns": `meshca refused to sign: CSR asks for DNS name "web.` + ns + `.svc", which no policy allows`,
			"cn":  "meshca refused to sign: CSR has a common name",
		}[name]
		require.Contains(t, readyCondition(got).Message, want, name)
	}
	require.Equal(t, 2, h.eng.signed(ns), "both reached the engine, which refused them")
}

// TestRequest_StatusWrittenWhileSigningIsNeverOverwritten: another replica
// (a lost Lease) settles the request while meshca signs it; meshca's
// status write carries the resourceVersion it read, the apiserver answers
// Conflict, and the other replica's certificate stays.
func TestRequest_StatusWrittenWhileSigningIsNeverOverwritten(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)

	other := []byte("-----BEGIN CERTIFICATE-----\nb3RoZXIgcmVwbGljYQ==\n-----END CERTIFICATE-----\n")
	key := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "raced"}}
	h.eng.beforeSign.Store(ns, func() {
		got := getRequest(t, key)
		got.Status.Certificate = other
		now := metav1.Now()
		got.Status.Conditions = append(got.Status.Conditions, cmapi.CertificateRequestCondition{
			Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: cmapi.CertificateRequestReasonIssued,
			Message: "issued by the other replica", LastTransitionTime: &now,
		})
		require.NoError(t, env.CtrlClient.Status().Update(context.Background(), got))
	})
	t.Cleanup(func() { h.eng.beforeSign.Delete(ns) })
	issued := reconciles(t, certmanager.RequestControllerName, "issued")
	ignored := reconciles(t, certmanager.RequestControllerName, "ignored")
	cr := createRequest(t, crSpec{ns: ns, name: "raced", uri: spiffeID(ns, "raced"), issuer: meshIssuerRef("mesh"), approve: true})

	// The signing reconcile ends ignored (Conflict), and so does the one
	// the other replica's write triggers.
	require.Eventually(t, func() bool { return reconciles(t, certmanager.RequestControllerName, "ignored") >= ignored+2 },
		20*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, h.eng.signed(ns))
	got := getRequest(t, cr)
	require.Equal(t, other, got.Status.Certificate, "meshca overwrote the certificate another replica wrote")
	require.Equal(t, "issued by the other replica", readyCondition(got).Message)
	require.Equal(t, issued, reconciles(t, certmanager.RequestControllerName, "issued"))
}

// A status write that fails (here a ValidatingAdmissionPolicy refuses
// status.certificate; RBAC or an apiserver error is the same) is retried
// with the certificate already signed, not with a new one: one issuance
// per request, however many retries it takes. Once the write is allowed,
// that certificate is the one delivered.
func TestRequest_AFailedStatusWriteIsRetriedWithoutSigningAgain(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	policy := "refuse-certificates-" + ns
	env.Refuse(t, kubeenv.RefusalPolicy{
		Name: policy, Group: "cert-manager.io", Resource: "certificaterequests/status", Operations: []string{"UPDATE"},
		Expression: "!has(object.status) || !has(object.status.certificate)", Message: "status.certificate is refused here", Namespace: ns,
	})
	// The policy is in force once a probe's certificate is refused.
	probe := createRequest(t, crSpec{ns: ns, name: "probe", uri: spiffeID(ns, "probe"), issuer: cmmeta.IssuerReference{Group: "example.com", Name: "x"}})
	require.Eventually(t, func() bool {
		p := getRequest(t, probe)
		p.Status.Certificate = []byte("x")
		return env.CtrlClient.Status().Update(ctx, p) != nil
	}, 20*time.Second, 50*time.Millisecond, "the admission policy is in force")

	errors0 := reconciles(t, certmanager.RequestControllerName, "error")
	cr := createRequest(t, crSpec{ns: ns, name: "refused", uri: spiffeID(ns, "refused"), issuer: meshIssuerRef("mesh"), approve: true})
	require.Eventually(t, func() bool { return reconciles(t, certmanager.RequestControllerName, "error") >= errors0+3 },
		30*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, h.eng.signed(ns), "one issuance for the request, however many retries")

	env.Unrefuse(policy)
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonIssued)
	leaf := verifyIssued(t, h, got, spiffeID(ns, "refused"))
	require.Equal(t, 1, h.eng.signed(ns))
	n := 0
	require.NoError(t, h.ca.rt.Store.ListIssuances(ctx, func(r store.Issuance) bool {
		if r.Requester == "certmanager:"+ns+"/refused" {
			n++
			require.Equal(t, hex.EncodeToString(leaf.SerialNumber.Bytes()), r.Serial, "the certificate delivered is the one recorded")
		}
		return true
	}))
	require.Equal(t, 1, n)
}
