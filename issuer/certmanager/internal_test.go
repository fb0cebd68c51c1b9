package certmanager

import (
	"strings"
	"testing"
	"unicode/utf8"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	cr := func(group string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
			"metadata": map[string]any{"name": "r", "managedFields": []any{map[string]any{"manager": "x"}}},
			"spec":     map[string]any{"request": "Y3Ny", "duration": "10000000h", "issuerRef": map[string]any{"group": group, "name": "n"}},
			"status":   map[string]any{"certificate": "Y3J0", "ca": "Y2E="},
		}}
		return u
	}
	got, err := trimForeign(cr("issuer.meshca.io"))
	require.NoError(t, err)
	ours := got.(*unstructured.Unstructured)
	require.Nil(t, ours.GetManagedFields())
	require.Equal(t, "Y3Ny", ours.Object["spec"].(map[string]any)["request"])
	require.Equal(t, "Y3J0", ours.Object["status"].(map[string]any)["certificate"], "finished() reads it")

	got, err = trimForeign(cr("cert-manager.io"))
	require.NoError(t, err)
	other := got.(*unstructured.Unstructured)
	require.Nil(t, other.GetManagedFields())
	require.Equal(t, map[string]any{"issuerRef": map[string]any{"group": "cert-manager.io", "name": "n"}}, other.Object["spec"],
		"only the issuerRef is kept: the request, and a duration that may not even decode, are dropped")
	require.NotContains(t, other.Object, "status")

	got, err = trimForeign("not a request")
	require.NoError(t, err)
	require.Equal(t, "not a request", got)
}

func TestDecodeRequest_UndecodableKeepsMetadataAndStatus(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
		"metadata": map[string]any{"name": "r", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
		"spec":     map[string]any{"duration": "10000000h", "issuerRef": map[string]any{"group": "issuer.meshca.io", "name": "n"}},
		"status":   map[string]any{"failureTime": "2026-01-01T00:00:00Z"},
	}}
	cr, err := decodeRequest(u)
	require.Error(t, err)
	require.Equal(t, "r", cr.Name)
	require.Equal(t, "ns", cr.Namespace)
	require.Equal(t, "7", cr.ResourceVersion)
	require.Equal(t, "issuer.meshca.io", cr.Spec.IssuerRef.Group)
	require.True(t, finished(cr), "its status is still read")
}

func TestTruncate_BoundedAndNeverCutsARune(t *testing.T) {
	s := strings.Repeat("a", maxMessage-1) + "é" + strings.Repeat("x", 40000)
	got := truncate(s)
	require.True(t, utf8.ValidString(got), "a cut in the middle of é")
	require.Equal(t, strings.Repeat("a", maxMessage-1)+"…", got)
}
