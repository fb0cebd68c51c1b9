package csrsigner

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

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
