package certmanager

import (
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEventReason_CamelCasesPolicyReasons(t *testing.T) {
	require.Equal(t, "KeyEnciphermentDropped", eventReason("key_encipherment_dropped"))
	require.Equal(t, "DurationClampedToIssuer", eventReason("duration_clamped_to_issuer"))
	require.Equal(t, "X", eventReason("_x_"))
}

func TestIssuerKey_OnlyOurGroupExactlyAndEmptyKindIsMeshIssuer(t *testing.T) {
	cr := func(group, kind string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "r"},
			Spec:       cmapi.CertificateRequestSpec{IssuerRef: cmmeta.IssuerReference{Group: group, Kind: kind, Name: "mesh"}},
		}
	}
	require.Equal(t, "MeshIssuer/shop/mesh", issuerKey(cr("issuer.meshca.io", "")))
	require.Equal(t, "MeshIssuer/shop/mesh", issuerKey(cr("issuer.meshca.io", "MeshIssuer")))
	require.Equal(t, "MeshClusterIssuer/mesh", issuerKey(cr("issuer.meshca.io", "MeshClusterIssuer")))
	require.Empty(t, issuerKey(cr("issuer.meshca.io", "Issuer")))
	require.Empty(t, issuerKey(cr("cert-manager.io", "")))
	require.Empty(t, issuerKey(cr("ISSUER.meshca.io", "")))
	require.Empty(t, issuerKey(cr("", "MeshIssuer")))
}

func TestFinished_IssuedFailedDeniedOrACertificate(t *testing.T) {
	ready := func(reason string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: []cmapi.CertificateRequestCondition{
			{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: reason},
		}}}
	}
	require.True(t, finished(ready(cmapi.CertificateRequestReasonIssued)))
	require.True(t, finished(ready(cmapi.CertificateRequestReasonFailed)))
	require.True(t, finished(ready(cmapi.CertificateRequestReasonDenied)))
	require.False(t, finished(ready(cmapi.CertificateRequestReasonPending)))
	require.False(t, finished(&cmapi.CertificateRequest{}))
	require.True(t, finished(&cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Certificate: []byte("x")}}))
	now := metav1.Now()
	require.True(t, finished(&cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{FailureTime: &now}}))
}

func TestTrimForeign_KeepsOursWholeAndDropsWhatIsNeverReadOfOthers(t *testing.T) {
	cr := func(group string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "r", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}},
			Spec:       cmapi.CertificateRequestSpec{Request: []byte("csr"), IssuerRef: cmmeta.IssuerReference{Group: group}},
			Status:     cmapi.CertificateRequestStatus{Certificate: []byte("crt"), CA: []byte("ca")},
		}
	}
	got, err := trimForeign(cr("issuer.meshca.io"))
	require.NoError(t, err)
	ours := got.(*cmapi.CertificateRequest)
	require.Nil(t, ours.ManagedFields)
	require.Equal(t, []byte("csr"), ours.Spec.Request)
	require.Equal(t, []byte("crt"), ours.Status.Certificate, "finished() reads it")

	got, err = trimForeign(cr("cert-manager.io"))
	require.NoError(t, err)
	other := got.(*cmapi.CertificateRequest)
	require.Nil(t, other.Spec.Request)
	require.Nil(t, other.Status.Certificate)
	require.Nil(t, other.Status.CA)
	require.Equal(t, "cert-manager.io", other.Spec.IssuerRef.Group)

	got, err = trimForeign("not a request")
	require.NoError(t, err)
	require.Equal(t, "not a request", got)
}
