package kubesigner

import (
	"context"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/caerr"
)

// Controller is one controller run by meshca's manager.
type Controller interface {
	// Name is a constant chosen by meshca (it becomes a metric label).
	Name() string
	// AddToScheme registers the API types the controller reads and writes.
	AddToScheme(s *runtime.Scheme) error
	// Cache restricts what the shared cache holds for the kinds the
	// controller watches (label and field selectors, namespaces). The
	// manager merges every controller's restrictions before it starts; two
	// controllers must not restrict the same kind differently.
	Cache() map[client.Object]cache.ByObject
	// SetupWithManager registers the controller's watches and reconciler.
	SetupWithManager(mgr ctrl.Manager, m *Metrics) error
}

// Engine is the signing engine (authority.Authority): the policy pipeline
// decides what is issued, and an issuance is durable before Sign returns.
type Engine interface {
	Sign(ctx context.Context, req authority.Request) (*authority.Result, error)
}

// Transient reports whether an engine error is one to retry (the CA not
// ready, its store or root unreachable, a rate limit) rather than a verdict
// on the request. A front door never marks a request failed for good on a
// transient error: cert-manager, for one, backs off for hours after a
// Failed CertificateRequest.
func Transient(err error) bool {
	switch caerr.CodeOf(err) {
	case caerr.Unavailable, caerr.Internal, caerr.ResourceExhausted, caerr.FailedPrecondition:
		// FailedPrecondition is the CA's state (an expired issuer awaiting
		// rotation), not the request's.
		return true
	}
	return false
}

// ChainPEM is the issued certificate followed by the intermediates above
// it (RFC 5246 §7.4.2 order, leaf first), as PEM; with roots it also ends
// with every active root.
func ChainPEM(res *authority.Result, roots bool) []byte {
	n := len(res.Chain)
	if !roots && n > 1 {
		n--
	}
	var b strings.Builder
	for _, c := range res.Chain[:n] {
		b.WriteString(c)
		if !strings.HasSuffix(c, "\n") {
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

// Retry bounds of a request whose reconcile ended in a transient problem
// (a CA not ready, an API error): exponential per request from RetryBase
// to RetryMax (short enough that istiod, which waits 60 s, gets its answer once the CA is back). controller-runtime's default grows to about 16 minutes,
// which would leave a kubelet's or istiod's request waiting long after the
// CA is back.
const (
	RetryBase = 100 * time.Millisecond
	RetryMax  = 10 * time.Second
)

// CacheSyncTimeout bounds how long a controller waits for its informers:
// a cache that cannot sync (a kind not served, a list the RBAC denies or
// the typed informer cannot decode) makes the manager stop after it with
// an error, rather than hang with every controller silent; serve logs it
// and starts the controllers again with backoff (cmd/meshca
// startControllers), while the Istio endpoint goes on serving.
const CacheSyncTimeout = 2 * time.Minute

// ControllerOptions are the options every front door's controller runs
// with: workers reconciles at once, the work queue reporting into m, and
// the retry bounds above. The manager has already refused two of meshca's
// controllers with one name, so controller-runtime's process-wide name
// check is skipped (tests run several managers in one process).
func ControllerOptions(m *Metrics, workers int) controller.Options {
	skip := true
	return controller.Options{
		MaxConcurrentReconciles: workers,
		NewQueue:                NewQueue[reconcile.Request](m),
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](RetryBase, RetryMax),
		SkipNameValidation:      &skip,
		CacheSyncTimeout:        CacheSyncTimeout,
	}
}
