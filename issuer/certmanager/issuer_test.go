package certmanager_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/issuer/certmanager"
	"github.com/meshca/meshca/issuer/certmanager/api/v1alpha1"
	"github.com/meshca/meshca/issuer/kubesigner"
)

func TestCRDs_InstalledWithStatusSubresourceAndPrinterColumns(t *testing.T) {
	for _, name := range []string{"meshissuers.issuer.meshca.io", "meshclusterissuers.issuer.meshca.io"} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		require.NoError(t, env.CtrlClient.Get(t.Context(), clientKey(name), crd))
		require.Len(t, crd.Spec.Versions, 1)
		v := crd.Spec.Versions[0]
		require.Equal(t, "v1alpha1", v.Name)
		require.NotNil(t, v.Subresources.Status)
		var cols []string
		for _, c := range v.AdditionalPrinterColumns {
			cols = append(cols, c.Name)
		}
		require.Equal(t, []string{"Ready", "Reason", "Message", "Age"}, cols)
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.NonStructuralSchema {
				t.Fatalf("%s has a non-structural schema: %s", name, c.Message)
			}
		}
	}
}

func TestIssuer_InitializingThenCheckedPerGeneration(t *testing.T) {
	h := start(t)
	ns := namespace(t)
	block := make(chan struct{})
	h.eng.checkBlock.Store(&block)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{Profile: string(profile.Classical)})
	c := waitIssuer(t, iss, v1alpha1.ReasonInitializing)
	require.Equal(t, metav1.ConditionFalse, c.Status)
	require.Equal(t, int64(1), c.ObservedGeneration)
	h.eng.checkBlock.Store(nil)
	close(block)
	c = waitIssuer(t, iss, v1alpha1.ReasonChecked)
	require.Equal(t, metav1.ConditionTrue, c.Status)
	require.Equal(t, "meshca can sign certificates of the classical profile", c.Message)
	checkedAt := c.LastTransitionTime
	require.True(t, stamp.Equal(checkedAt.Time), "lastTransitionTime %s is the controller's clock", checkedAt)
	var applied bool
	for _, mf := range getIssuer(t, iss).ManagedFields {
		if mf.Manager == "meshca" {
			require.Equal(t, metav1.ManagedFieldsOperationApply, mf.Operation)
			require.Equal(t, "status", mf.Subresource)
			applied = true
		}
	}
	require.True(t, applied, "the Ready condition is applied on /status by meshca")

	// Re-checks that find nothing new write nothing.
	rv := getIssuer(t, iss).ResourceVersion
	checks := reconciles(t, certmanager.IssuerControllerName, "checked")
	require.Eventually(t, func() bool { return reconciles(t, certmanager.IssuerControllerName, "checked") >= checks+3 },
		10*time.Second, 20*time.Millisecond, "the periodic re-check did not run")
	require.Equal(t, rv, getIssuer(t, iss).ResourceVersion, "an unchanged check writes nothing")

	// A new spec is a new generation: checked again, observedGeneration follows.
	iss.Spec.Profile = string(profile.Catalyst)
	require.NoError(t, env.CtrlClient.Update(t.Context(), iss))
	require.Equal(t, int64(2), iss.Generation)
	c = waitIssuer(t, iss, v1alpha1.ReasonChecked)
	require.Equal(t, int64(2), c.ObservedGeneration)
	require.Equal(t, "meshca can sign certificates of the catalyst profile", c.Message)
	require.False(t, c.LastTransitionTime.Before(&checkedAt))
}

func TestIssuer_FailedForASpecMeshcaCannotHonour(t *testing.T) {
	start(t)
	ns := namespace(t)
	// The test CA is catalyst: it issues catalyst and classical only.
	composite := createIssuer(t, ns, "composite", v1alpha1.MeshIssuerSpec{Profile: string(profile.Composite)})
	c := waitIssuer(t, composite, v1alpha1.ReasonFailed)
	require.Equal(t, metav1.ConditionFalse, c.Status)
	require.Contains(t, c.Message, "meshca cannot sign for this issuer: a CA of profile catalyst cannot issue composite certificates")

	// The CRD refuses a maxDuration that is not positive (the controller's
	// own check stays for an issuer stored before the CRD said so).
	err := env.CtrlClient.Create(t.Context(), &v1alpha1.MeshIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "negative"}, Spec: v1alpha1.MeshIssuerSpec{MaxDuration: &metav1.Duration{Duration: -time.Hour}},
	})
	require.ErrorContains(t, err, "maxDuration must be a positive duration such as 2160h")

	// The CRD refuses a profile that does not exist.
	err = env.CtrlClient.Create(t.Context(), &v1alpha1.MeshIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rsa"}, Spec: v1alpha1.MeshIssuerSpec{Profile: "rsa"},
	})
	require.ErrorContains(t, err, `spec.profile: Unsupported value: "rsa"`)

	// A request for a Failed issuer waits (Pending), it does not fail.
	cr := createRequest(t, crSpec{ns: ns, name: "r", uri: spiffeID(ns, "r"), issuer: meshIssuerRef("composite"), approve: true})
	got := waitRequest(t, cr, cmapi.CertificateRequestReasonPending)
	require.Contains(t, readyCondition(got).Message, "MeshIssuer "+ns+"/composite is not ready (Failed: meshca cannot sign for this issuer")
}

func TestIssuer_PrinterColumnsServedByTheAPIServer(t *testing.T) {
	start(t)
	ns := namespace(t)
	iss := createIssuer(t, ns, "mesh", v1alpha1.MeshIssuerSpec{})
	waitIssuer(t, iss, v1alpha1.ReasonChecked)
	ci := &v1alpha1.MeshClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "print-" + ns}}
	require.NoError(t, env.CtrlClient.Create(t.Context(), ci))
	waitIssuer(t, ci, v1alpha1.ReasonChecked)

	for path, name := range map[string]string{
		"/apis/issuer.meshca.io/v1alpha1/namespaces/" + ns + "/meshissuers": "mesh",
		"/apis/issuer.meshca.io/v1alpha1/meshclusterissuers":                ci.Name,
	} {
		tbl := table(t, path)
		var cols []string
		for _, c := range tbl.ColumnDefinitions {
			cols = append(cols, c.Name)
		}
		require.Equal(t, []string{"Name", "Ready", "Reason", "Message", "Age"}, cols)
		var found bool
		for _, row := range tbl.Rows {
			if row.Cells[0] == name {
				found = true
				require.Equal(t, []any{name, "True", "Checked", "meshca can sign certificates of meshca's default profile"}, row.Cells[:4])
			}
		}
		require.True(t, found, "%s not listed at %s", name, path)
	}
}

// table GETs path from the apiserver as a meta.k8s.io/v1 Table (what kubectl get prints).
func table(t *testing.T, path string) *metav1.Table {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, strings.TrimRight(env.Config.Host, "/")+path, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	tbl := &metav1.Table{}
	require.NoError(t, json.Unmarshal(b, tbl))
	return tbl
}

type noMaterial struct{}

func (noMaterial) Material() *authority.Material { return nil }

func TestEngineCheck_TransientWithoutMaterialOrAfterExpiryPermanentForAProfileTheCACannotIssue(t *testing.T) {
	h := start(t)
	err := certmanager.EngineCheck(noMaterial{}, nil)(profile.Classical)
	require.Equal(t, caerr.Unavailable, caerr.CodeOf(err))
	require.True(t, kubesigner.Transient(err))

	m := h.ca.rt.Authority.Material()
	clk := clocktesting.NewFakePassiveClock(m.Bundle.Cert.NotAfter.Add(-time.Minute))
	check := certmanager.EngineCheck(h.ca.rt.Authority, clk)
	require.NoError(t, check(""))
	require.NoError(t, check(profile.Classical))
	err = check(profile.MLDSA)
	require.Equal(t, caerr.InvalidArgument, caerr.CodeOf(err))
	require.False(t, kubesigner.Transient(err))
	require.ErrorContains(t, err, "cannot issue mldsa certificates")

	clk.SetTime(m.Bundle.Cert.NotAfter.Add(time.Second))
	err = check("")
	require.True(t, kubesigner.Transient(err), "an expired intermediate awaits rotation: %v", err)
	require.ErrorContains(t, err, "the signing intermediate expired at")
}
