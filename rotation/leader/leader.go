// Package leader runs meshca's singleton jobs (the rotation steps, CRL
// publication, alert delivery, the Kubernetes controllers and the trust
// publisher) on the one replica that holds a Kubernetes Lease
// (coordination.k8s.io/v1), taken through client-go's leaderelection
// (https://pkg.go.dev/k8s.io/client-go/tools/leaderelection). Every
// replica serves signing.
//
// A holder that cannot renew the Lease within the renew deadline stops
// leading; its jobs' context ends then, while the Lease is still its own
// for the rest of the lease duration, so they stop before another replica
// may take it. The replica then campaigns again: it keeps serving signing,
// and whichever replica takes the Lease next (itself included, once the
// apiserver answers again) starts the jobs anew. Writes that must not come from a stale holder carry the
// Lease's fence (store.Fence: the holder's identity and
// spec.leaseTransitions), which the store checks. On shutdown the jobs are
// stopped first and the Lease is released after them (ReleaseOnCancel).
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/meshca/meshca/ca/store"
)

// Options configure an Elector.
type Options struct {
	Namespace, Name string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's
	// timings (zero: 15 s, 10 s and 2 s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity is this replica's holder identity (default: the host
	// name and a random suffix).
	Identity string
	// StopWait bounds how long shutdown waits for the jobs to stop
	// before releasing the Lease (default 20 s).
	StopWait time.Duration
	Log      *slog.Logger
	// Registerer, when set, gets meshca_lease_held and
	// meshca_lease_lost_total.
	Registerer prometheus.Registerer
}

// Elector holds the Lease for the singleton jobs.
type Elector struct {
	o    Options
	lock *resourcelock.LeaseLock
	// reader reads the Lease for the fence; a LeaseLock is not safe for
	// concurrent use, and lock is the elector's.
	reader *resourcelock.LeaseLock
	le     *leaderelection.LeaderElector

	fence atomic.Pointer[store.Fence]

	mu      sync.Mutex
	jobs    []job
	leadCtx context.Context // nil while not leading
	running sync.WaitGroup
	stop    context.CancelFunc
	elected chan struct{}
	once    sync.Once // closes elected
	// lost counts the terms that ended without shutdown.
	lost atomic.Int64

	held     prometheus.Gauge
	lostRate prometheus.Counter
}

type job struct {
	name string
	run  func(ctx context.Context)
}

// New builds an Elector on the Lease o.Namespace/o.Name.
func New(rc *rest.Config, o Options) (*Elector, error) {
	if o.Namespace == "" || o.Name == "" {
		return nil, errors.New("leader: the Lease needs a namespace and a name")
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline <= 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod <= 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.StopWait <= 0 {
		o.StopWait = 20 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("leader: holder identity: %w", err)
		}
		o.Identity = host + "_" + string(uuid.NewUUID())
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	e := &Elector{o: o, elected: make(chan struct{}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshca_lease_held",
			Help: "1 while this replica holds the Lease of the singleton jobs (rotation steps, CRL publication, revocations, alert delivery, trust publishing) and runs them, else 0.",
		}),
		lostRate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshca_lease_lost_total",
			Help: "Times this replica lost the Lease of the singleton jobs without shutting down (it could not renew it within the renew deadline).",
		}),
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(e.held); err != nil {
			return nil, err
		}
		if err := o.Registerer.Register(e.lostRate); err != nil {
			return nil, err
		}
	}
	e.lock = &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	r := *e.lock
	e.reader = &r
	e.le, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: e.lock, LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		ReleaseOnCancel: true, Name: o.Name,
		Callbacks: leaderelection.LeaderCallbacks{OnStartedLeading: e.started, OnStoppedLeading: func() {}},
	})
	if err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	return e, nil
}

// Check reads the Lease: a Forbidden answer (the ServiceAccount may not
// get the Lease) is returned, since the Lease could then never be taken
// and the singleton jobs would never run; a Lease that does not exist
// yet, or an apiserver that cannot be reached now, is no error. A
// kube-apiserver that has just started answers Forbidden until its RBAC
// authorizer has loaded the roles, so Forbidden is retried for
// checkForbiddenFor before it counts.
func (e *Elector) Check(ctx context.Context) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, checkRetry, checkForbiddenFor, true, func(ctx context.Context) (bool, error) {
		_, err := e.reader.Client.Leases(e.o.Namespace).Get(ctx, e.o.Name, metav1.GetOptions{})
		if ctx.Err() != nil {
			return false, nil // the retries are over
		}
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			if last == nil {
				e.o.Log.Warn("the apiserver refuses to let meshca read the Lease; retrying, as a just-started apiserver does until its authorizer is ready",
					"lease", e.o.Namespace+"/"+e.o.Name, "for", checkForbiddenFor, "error", err)
			}
			last = err
			return false, nil
		}
		return true, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("lease %s/%s: %w", e.o.Namespace, e.o.Name, last)
	}
	return err
}

// checkForbiddenFor and checkRetry bound Check's retries of Forbidden.
var (
	checkForbiddenFor = 30 * time.Second
	checkRetry        = time.Second
)

// Identity is this replica's holder identity.
func (e *Elector) Identity() string { return e.o.Identity }

// Leading reports whether this replica holds the Lease, and the fence of
// its writes. It implements intermediate.Leader.
func (e *Elector) Leading() (store.Fence, bool) {
	if f := e.fence.Load(); f != nil {
		return *f, true
	}
	return store.Fence{}, false
}

// Holder is the holder identity this replica last observed in the Lease
// ("" before the first observation).
func (e *Elector) Holder() string { return e.le.GetLeader() }

// Elected is closed once this replica first leads.
func (e *Elector) Elected() <-chan struct{} { return e.elected }

// Go runs fn while this replica leads: now if it leads, else once it
// takes the Lease. fn's context ends when the lease is lost or on
// shutdown; fn must return then.
func (e *Elector) Go(name string, fn func(ctx context.Context)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jobs = append(e.jobs, job{name, fn})
	if e.leadCtx != nil {
		e.startLocked(job{name, fn})
	}
}

func (e *Elector) startLocked(j job) {
	e.running.Add(1)
	ctx := e.leadCtx
	go func() {
		defer e.running.Done()
		j.run(ctx)
	}()
}

// started is client-go's OnStartedLeading: it reads the Lease's
// transitions for the fence and starts every job.
func (e *Elector) started(ctx context.Context) {
	rec, _, err := e.reader.Get(ctx)
	if err != nil || rec.HolderIdentity != e.o.Identity {
		// Leading without a fence would let a stale holder write: wait
		// for the lease to be lost (renew ends ctx) rather than run.
		e.o.Log.Error("cannot read the lease just taken; not running the singleton jobs", "error", err)
		return
	}
	f := store.Fence{Holder: e.o.Identity, Token: uint64(rec.LeaderTransitions)}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	jctx, cancel := context.WithCancel(ctx)
	e.stop = cancel
	e.leadCtx = jctx
	e.fence.Store(&f)
	e.held.Set(1)
	context.AfterFunc(jctx, func() {
		e.fence.Store(nil)
		e.held.Set(0)
	})
	e.o.Log.Info("took the lease of the singleton jobs", "lease", e.o.Namespace+"/"+e.o.Name, "holder", f.Holder, "token", f.Token)
	for _, j := range e.jobs {
		e.startLocked(j)
	}
	e.once.Do(func() { close(e.elected) })
}

// Run campaigns for the Lease until ctx ends, then stops the jobs (up to
// StopWait) and releases the Lease. A lost Lease (not
// renewed within the renew deadline, as when the apiserver cannot be
// reached) stops the jobs, and Run campaigns again: a replica that loses
// the Lease is a follower, not a failure.
func (e *Elector) Run(ctx context.Context) {
	for {
		e.term(ctx)
		if ctx.Err() != nil {
			return
		}
		e.stopJobs()
		e.mu.Lock()
		e.leadCtx, e.stop = nil, nil
		e.mu.Unlock()
		e.lost.Add(1)
		e.lostRate.Inc()
		e.o.Log.Warn("lost the lease of the singleton jobs: they are stopped; campaigning again",
			"lease", e.o.Namespace+"/"+e.o.Name, "holder", e.o.Identity)
	}
}

// term runs one campaign of client-go's elector: it returns when ctx ends
// (after stopping the jobs, so that the Lease is released after them) or
// when the Lease, once taken, is lost.
func (e *Elector) term(ctx context.Context) {
	electCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	ended := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-ctx.Done():
			e.stopJobs()
		case <-ended:
		}
		cancel()
	})
	e.le.Run(electCtx)
	close(ended)
	watch.Wait()
}

// Lost is how many times this replica lost the Lease without shutting
// down.
func (e *Elector) Lost() int64 { return e.lost.Load() }

// stopJobs ends the jobs' context and waits (up to StopWait) for them.
func (e *Elector) stopJobs() {
	e.mu.Lock()
	if e.stop != nil {
		e.stop()
	}
	e.mu.Unlock()
	e.fence.Store(nil)
	done := make(chan struct{})
	go func() { e.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.o.StopWait):
		e.o.Log.Warn("the singleton jobs did not stop in time", "waited", e.o.StopWait)
	}
}
