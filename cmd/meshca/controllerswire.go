package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/issuer/kubesigner"
)

// controllerDeps is what the Kubernetes controllers are built from.
type controllerDeps struct {
	cfg *config.Config
	rt  *authority.Runtime
	rc  *rest.Config
	log *slog.Logger
	reg prometheus.Registerer
	// single, when it holds a Lease, runs the manager while this replica
	// holds it (the manager's own leader election is off then: one Lease).
	single *singletons
	// runningAfter is how long a started manager must run, once it leads,
	// before meshca_controllers_waiting is cleared (0: controllersRunningAfter).
	runningAfter time.Duration
}

// controllersRunningAfter: a controller whose informers do not sync stops
// the manager after kubesigner.CacheSyncTimeout, so one that outlasts it
// (with a margin for the start itself) runs.
const controllersRunningAfter = kubesigner.CacheSyncTimeout + 15*time.Second

// kubeControllers builds the enabled Kubernetes-native signers. Each
// front door's wiring lives in its own file (csrwire.go, podcertwire.go,
// certmanagerwire.go) and adds itself here.
func kubeControllers(d controllerDeps) ([]kubesigner.Controller, error) {
	var cs []kubesigner.Controller
	for _, build := range []func(controllerDeps) (kubesigner.Controller, error){
		podCertController,
		csrController,
		buildMeshIssuers, buildCertificateRequests,
	} {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs, nil
}

// preparer is a controller that must learn something from the apiserver
// before the manager's cache can be built (the trust publisher's served
// ClusterTrustBundle version); Prepare waits while the apiserver is
// unreachable.
type preparer interface {
	Prepare(ctx context.Context) error
}

// managerRetry spaces attempts to build the manager while the apiserver
// cannot be reached (building it discovers the watched kinds).
var managerRetry = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Steps: math.MaxInt32, Cap: 30 * time.Second}

// managerStopWait bounds how long serve waits, on shutdown or at the end
// of a Lease term, for the manager to stop its controllers.
const managerStopWait = 20 * time.Second

// startControllers runs cs on one controller-runtime manager until ctx
// ends. It builds the manager in the background, retrying while the
// apiserver cannot be reached or does not serve a kind a controller
// watches (a CRD not installed), so that serve's other parts (the Istio
// endpoint serves on every replica) do not wait for it. With leader
// election only the Lease holder runs the controllers, on a fresh manager
// each term; losing the Lease stops them (rotation/leader). A manager
// whose caches do not sync (a kind watched only, not served or not
// readable) starts again after backoff; one that stops early for another
// reason (a controller that cannot be set up) calls fail, which ends
// serve. The
// returned wait blocks, after ctx ended, until the manager has stopped
// and released the Lease (bounded by managerStopWait).
func startControllers(ctx context.Context, d controllerDeps, cs []kubesigner.Controller, fail func(error)) (func(), error) {
	if len(cs) == 0 {
		return func() {}, nil
	}
	ctrllog.SetLogger(logr.FromSlogHandler(d.log.With("component", "controllers").Handler()))
	rc := rest.CopyConfig(d.rc)
	rc.QPS, rc.Burst = d.cfg.Signers.Controllers.QPS, d.cfg.Signers.Controllers.Burst
	le := d.cfg.Signers.Controllers.LeaderElection
	// The manager holds no Lease of its own: with leader election the
	// singleton jobs' Lease (rotation/leader) runs it, once per term.
	opts := kubesigner.ManagerOptions{Log: d.log, Metrics: kubesigner.NewMetrics(d.reg)}
	names := make([]string, len(cs))
	var syncers []syncer
	for i, c := range cs {
		names[i] = c.Name()
		if s, ok := c.(syncer); ok {
			syncers = append(syncers, s)
		}
	}
	runningAfter := d.runningAfter
	if runningAfter <= 0 {
		runningAfter = controllersRunningAfter
	}
	// run builds a fresh manager each time (under the Lease, once per
	// term: a controller-runtime manager starts only once). While it
	// waits (the apiserver, a kind, the caches) meshca_controllers_waiting
	// says why, until a start has run past the informers' sync timeout;
	// a replica whose term ended is not meant to run them.
	serveCtx := ctx
	run := func(ctx context.Context) {
		defer opts.Metrics.Waiting("")
		retry := managerRetry.DelayFunc()
		for {
			mgr, err := newManager(ctx, d.log, rc, opts, cs)
			if err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("kubernetes controllers: %w", err))
				}
				return
			}
			d.log.Info("starting the Kubernetes controllers", "controllers", names, "leader_election", le.On(),
				"lease", le.Namespace+"/"+le.LeaseName)
			mctx, stop := context.WithCancel(ctx)
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				// Without an election the manager starts the controllers
				// once the caches of the kinds indexed at setup have
				// synced, and waits for those without a timeout.
				select {
				case <-mgr.Elected():
				case <-time.After(runningAfter):
					opts.Metrics.Waiting(kubesigner.WaitCachesNotSynced)
					d.log.Error("the Kubernetes controllers' caches have not synced (a kind they index not readable with meshca's RBAC?); they start once they do", "waited", runningAfter)
					select {
					case <-mgr.Elected():
					case <-mctx.Done():
						return
					}
				case <-mctx.Done():
					return
				}
				select {
				case <-time.After(runningAfter):
				case <-mctx.Done():
					return
				}
				// A runnable of the manager (the trust publisher) that
				// waits for informers of its own, without a timeout.
				if !allSynced(syncers) {
					opts.Metrics.Waiting(kubesigner.WaitCachesNotSynced)
					d.log.Error("a Kubernetes controller's informers have not synced (a kind it watches not readable with meshca's RBAC?); it starts once they do", "waited", runningAfter)
					tick := time.NewTicker(time.Second)
					defer tick.Stop()
					for !allSynced(syncers) {
						select {
						case <-tick.C:
						case <-mctx.Done():
							return
						}
					}
				}
				opts.Metrics.Waiting("")
			}()
			stuck, err := startBounded(mctx, mgr.Start, managerStopWait)
			stop()
			<-watched
			if stuck {
				// controller-runtime v0.25's manager, stopped while the
				// caches of the kinds indexed at setup are syncing, waits
				// for them in vain (runnableGroup.Start loops on its done
				// context, spinning a CPU) and never returns; this
				// replica would not campaign for the Lease again either.
				// Only a restart ends it.
				if serveCtx.Err() == nil {
					fail(fmt.Errorf("kubernetes controllers: the manager did not stop within %s of the end of the Lease term (its caches had not synced); restarting meshca", managerStopWait))
				} else {
					d.log.Warn("the Kubernetes controllers did not stop in time", "waited", managerStopWait)
				}
				return
			}
			switch {
			case err == nil || ctx.Err() != nil:
				return
			case !cacheNotSynced(err):
				fail(fmt.Errorf("kubernetes controllers stopped: %w", err))
				return
			}
			opts.Metrics.Waiting(kubesigner.WaitCachesNotSynced)
			// A kind watched only (no index asks for its mapping at
			// setup) that is not served, or one the RBAC may not list:
			// the caches never sync. The controllers start again later;
			// the rest of serve goes on.
			delay := retry()
			d.log.Error("the Kubernetes controllers' caches did not sync (a kind they watch not served, is its CRD installed? or not readable with meshca's RBAC); starting them again", "in", delay, "error", err)
			if !sleepCtx(ctx, delay) {
				return
			}
		}
	}
	if d.single != nil && d.single.el != nil {
		d.single.Go("controllers", run)
		// The singletons' shutdown waits for the manager (jobs stop
		// before the Lease is released).
		return d.single.wait, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() {
		select {
		case <-done:
		case <-time.After(managerStopWait):
			d.log.Warn("the Kubernetes controllers did not stop in time", "waited", managerStopWait)
		}
	}, nil
}

// prepareSlow: a Prepare that takes longer is waiting for the apiserver.
const prepareSlow = 5 * time.Second

// syncer is a controller that waits for informers of its own once the
// manager runs it (the trust publisher), and says when they have synced.
type syncer interface {
	HasSynced() bool
}

func allSynced(ss []syncer) bool {
	for _, s := range ss {
		if !s.HasSynced() {
			return false
		}
	}
	return true
}

// startBounded runs start(ctx) until it returns; once ctx has ended it
// waits at most stopWait more, and reports stuck when start has not
// returned by then (it is left running).
func startBounded(ctx context.Context, start func(context.Context) error, stopWait time.Duration) (stuck bool, err error) {
	done := make(chan error, 1)
	go func() { done <- start(ctx) }()
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return false, err
	case <-time.After(stopWait):
		return true, nil
	}
}

// newManager prepares the controllers that need it and builds their
// manager, retrying with backoff while the apiserver cannot be reached.
func newManager(ctx context.Context, log *slog.Logger, rc *rest.Config, opts kubesigner.ManagerOptions, cs []kubesigner.Controller) (ctrl.Manager, error) {
	for _, c := range cs {
		if p, ok := c.(preparer); ok {
			// Prepare waits, logging, while the apiserver does not answer.
			var (
				mu       sync.Mutex
				prepared bool
			)
			slow := time.AfterFunc(prepareSlow, func() {
				mu.Lock()
				defer mu.Unlock()
				if !prepared { // not after the caller went on (and may have cleared it)
					opts.Metrics.Waiting(kubesigner.WaitAPIServer)
				}
			})
			err := p.Prepare(ctx)
			mu.Lock()
			prepared = true
			mu.Unlock()
			slow.Stop()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name(), err)
			}
		}
	}
	retry := managerRetry.DelayFunc()
	for {
		mgr, err := kubesigner.NewManager(rc, opts, cs...)
		switch {
		case err == nil:
			return mgr, nil
		case unreachable(err):
			opts.Metrics.Waiting(kubesigner.WaitAPIServer)
			delay := retry()
			log.Warn("cannot reach the apiserver to set up the Kubernetes controllers; retrying", "in", delay, "error", err)
			if !sleepCtx(ctx, delay) {
				return nil, ctx.Err()
			}
		case meta.IsNoMatchError(err) || discovery.IsGroupDiscoveryFailedError(err):
			// A kind a controller watches is not served (cert-manager's
			// CRDs not installed, or removed): the controllers wait for
			// it, and the rest of serve, the Istio endpoint first, goes on.
			opts.Metrics.Waiting(kubesigner.WaitKindNotServed)
			delay := retry()
			log.Error("a kind the Kubernetes controllers watch is not served by the apiserver (is its CRD installed?); they start once it is, the rest of meshca serves meanwhile", "in", delay, "error", err)
			if !sleepCtx(ctx, delay) {
				return nil, ctx.Err()
			}
		default:
			return nil, err
		}
	}
}

// cacheNotSynced reports whether a manager stopped because a controller's
// informers did not sync within kubesigner.CacheSyncTimeout
// (controller-runtime says so only in its error text).
// A kind that is not served fails the same wait with the mapping's error.
func cacheNotSynced(err error) bool {
	return strings.Contains(err.Error(), "timed out waiting for cache to be synced") ||
		meta.IsNoMatchError(err) || discovery.IsGroupDiscoveryFailedError(err)
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// unreachable reports whether err is the apiserver not answering (a
// network error, or it is not ready), not a verdict about the request.
func unreachable(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) || apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err)
}
