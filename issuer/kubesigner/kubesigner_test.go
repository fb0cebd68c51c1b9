package kubesigner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/issuer/kubesigner"
)

func TestTransient_RetriesTheCAsStateNotTheRequestsFaults(t *testing.T) {
	for code, want := range map[caerr.Code]bool{
		caerr.Unavailable: true, caerr.Internal: true, caerr.ResourceExhausted: true, caerr.FailedPrecondition: true,
		caerr.InvalidArgument: false, caerr.PermissionDenied: false, caerr.Unauthenticated: false, caerr.NotFound: false,
	} {
		err := fmt.Errorf("wrapped: %w", caerr.New(code, "r", "m"))
		assert.Equal(t, want, kubesigner.Transient(err), "code %s", code)
	}
	// An error that is not the engine's (a context ending, an API error)
	// is retried, never a verdict on the request.
	assert.True(t, kubesigner.Transient(context.DeadlineExceeded))
	assert.True(t, kubesigner.Transient(errors.New("connection refused")))
}

func TestChainPEM_LeafFirstThenIntermediatesRootsOnlyWhenAsked(t *testing.T) {
	res := &authority.Result{Chain: []string{"LEAF\n", "INT1\n", "INT2", "ROOTA\nROOTB\n"}}
	assert.Equal(t, "LEAF\nINT1\nINT2\n", string(kubesigner.ChainPEM(res, false)))
	assert.Equal(t, "LEAF\nINT1\nINT2\nROOTA\nROOTB\n", string(kubesigner.ChainPEM(res, true)))
}

func TestNewQueue_ReportsDepthUnderTheControllersName(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := kubesigner.NewMetrics(reg)
	q := kubesigner.NewQueue[reconcile.Request](m)("csr", workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	q.Add(reconcile.Request{})
	q.Add(reconcile.Request{NamespacedName: client.ObjectKey{Name: "b"}})
	const want = `
# HELP meshca_controller_queue_depth Requests waiting in a controller's work queue.
# TYPE meshca_controller_queue_depth gauge
meshca_controller_queue_depth{controller="csr"} 2
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "meshca_controller_queue_depth"))
	m.Observe("csr", kubesigner.OutcomeIssued, 0.01)
	const reconciles = `
# HELP meshca_controller_reconcile_total Reconciles of meshca's Kubernetes controllers by outcome (issued, denied, failed, pending, ignored, error, checked).
# TYPE meshca_controller_reconcile_total counter
meshca_controller_reconcile_total{controller="csr",outcome="issued"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(reconciles), "meshca_controller_reconcile_total"))
	n, err := kubesigner.Reconciles(reg, "csr", kubesigner.OutcomeIssued)
	require.NoError(t, err)
	assert.Equal(t, 1.0, n)
	n, err = kubesigner.Reconciles(reg, "csr", kubesigner.OutcomeFailed)
	require.NoError(t, err)
	assert.Equal(t, 0.0, n, "a series never observed reads 0")
}

type fakeController struct {
	name  string
	cache map[client.Object]cache.ByObject
}

func (f fakeController) Name() string                            { return f.name }
func (f fakeController) AddToScheme(*runtime.Scheme) error       { return nil }
func (f fakeController) Cache() map[client.Object]cache.ByObject { return f.cache }
func (f fakeController) SetupWithManager(ctrl.Manager, *kubesigner.Metrics) error {
	return nil
}

func TestNewManager_RefusesConflictingControllers(t *testing.T) {
	rc := &rest.Config{Host: "https://127.0.0.1:1"}
	_, err := kubesigner.NewManager(rc, kubesigner.ManagerOptions{}, fakeController{name: "a"}, fakeController{name: "a"})
	require.ErrorContains(t, err, `two controllers named "a"`)

	cms := func() map[client.Object]cache.ByObject {
		return map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {}}
	}
	_, err = kubesigner.NewManager(rc, kubesigner.ManagerOptions{}, fakeController{name: "a", cache: cms()}, fakeController{name: "b", cache: cms()})
	require.ErrorContains(t, err, "the cache of *v1.ConfigMap is already restricted by another controller")

	_, err = kubesigner.NewManager(rc, kubesigner.ManagerOptions{})
	require.ErrorContains(t, err, "no controllers to run")
}
