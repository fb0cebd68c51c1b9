package csrsigner

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/policy"
)

func TestStateOf(t *testing.T) {
	cond := func(ty certv1.RequestConditionType, st corev1.ConditionStatus) certv1.CertificateSigningRequestCondition {
		return certv1.CertificateSigningRequestCondition{Type: ty, Status: st}
	}
	tests := map[string]struct {
		cert  []byte
		conds []certv1.CertificateSigningRequestCondition
		want  state
	}{
		"new":                         {want: unapproved},
		"approved":                    {conds: []certv1.CertificateSigningRequestCondition{cond(certv1.CertificateApproved, corev1.ConditionTrue)}, want: signable},
		"approved False":              {conds: []certv1.CertificateSigningRequestCondition{cond(certv1.CertificateApproved, corev1.ConditionFalse)}, want: unapproved},
		"denied":                      {conds: []certv1.CertificateSigningRequestCondition{cond(certv1.CertificateDenied, corev1.ConditionTrue)}, want: denied},
		"approved then failed":        {conds: []certv1.CertificateSigningRequestCondition{cond(certv1.CertificateApproved, corev1.ConditionTrue), cond(certv1.CertificateFailed, corev1.ConditionTrue)}, want: failed},
		"approved, failed False":      {conds: []certv1.CertificateSigningRequestCondition{cond(certv1.CertificateApproved, corev1.ConditionTrue), cond(certv1.CertificateFailed, corev1.ConditionFalse)}, want: failed},
		"issued":                      {cert: []byte("x"), conds: []certv1.CertificateSigningRequestCondition{cond(certv1.CertificateApproved, corev1.ConditionTrue)}, want: issued},
		"certificate but no approval": {cert: []byte("x"), want: issued},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			csr := &certv1.CertificateSigningRequest{Status: certv1.CertificateSigningRequestStatus{Certificate: tc.cert, Conditions: tc.conds}}
			require.Equal(t, tc.want, stateOf(csr))
		})
	}
}

func TestEventReason(t *testing.T) {
	require.Equal(t, EventKeyEnciphermentDropped, eventReason(policy.ReasonKeyEnciphermentDropped))
	require.Equal(t, EventDurationClamped, eventReason(policy.ReasonDurationClamped))
	require.Equal(t, EventDurationClamped, eventReason(policy.ReasonDurationClampedToIssuer))
	require.Equal(t, EventAdjusted, eventReason("something_else"))
}

func TestBound(t *testing.T) {
	long := make([]byte, 2*maxMessage)
	for i := range long {
		long[i] = 'a'
	}
	require.Len(t, bound(string(long)), maxMessage+len("…"))
	require.Equal(t, "short", bound("short"))
}

func TestBound_NeverCutsARune(t *testing.T) {
	s := strings.Repeat("a", maxMessage-1) + "é" + "tail"
	got := bound(s)
	require.True(t, utf8.ValidString(got), "a cut in the middle of é")
	require.Equal(t, strings.Repeat("a", maxMessage-1)+"…", got)
}

func TestTrim_KeepsOursWholeAndOnlyTheSignerNameOfOthers(t *testing.T) {
	s, err := New(Options{SignerNames: []string{"meshca.io/a", "meshca.io/b"}, Engine: nopEngine{},
		TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), AllowedRequesters: []string{"system:serviceaccount:istio-system:istiod"}})
	require.NoError(t, err)
	req := func(signer string) *certv1.CertificateSigningRequest {
		return &certv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "r", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}, Annotations: map[string]string{"a": "b"}},
			Spec:       certv1.CertificateSigningRequestSpec{SignerName: signer, Request: []byte("csr"), Username: "u", Groups: []string{"g"}},
			Status:     certv1.CertificateSigningRequestStatus{Conditions: []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateApproved}}},
		}
	}
	got, err := s.trim(req("meshca.io/b"))
	require.NoError(t, err)
	ours := got.(*certv1.CertificateSigningRequest)
	require.Nil(t, ours.ManagedFields)
	want := req("meshca.io/b")
	want.ManagedFields = nil
	require.Equal(t, want, ours)

	got, err = s.trim(req("kubernetes.io/kube-apiserver-client"))
	require.NoError(t, err)
	other := got.(*certv1.CertificateSigningRequest)
	require.Nil(t, other.ManagedFields)
	require.Nil(t, other.Annotations)
	require.Equal(t, certv1.CertificateSigningRequestSpec{SignerName: "kubernetes.io/kube-apiserver-client"}, other.Spec)
	require.Empty(t, other.Status.Conditions)
}

type nopEngine struct{}

func (nopEngine) Sign(context.Context, authority.Request) (*authority.Result, error) {
	return nil, errors.New("not used")
}
