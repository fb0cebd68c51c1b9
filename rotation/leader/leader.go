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
	"k8s.io/utils/clock"

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
	// Clock times the renewal watchdog and the retries (default: the real
	// clock). client-go's elector keeps its own real clock.
	Clock clock.WithTicker
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

	// renewed records the last successful write of the Lease by
	// client-go (taking or renewing it).
	renewed *renewLock

	mu   sync.Mutex
	jobs []job
	cur  *termJobs // the jobs of the current term; nil while not leading
	// stopping is set on shutdown: no term starts jobs after it.
	stopping bool
	// endTerm ends the current campaign of client-go's elector (term).
	endTerm context.CancelFunc
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

// termJobs are the jobs started in one term: their context, and the wait
// for them to return.
type termJobs struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// renewLock is the Lease lock client-go writes through; it records when a
// write last succeeded.
type renewLock struct {
	resourcelock.Interface
	clock clock.PassiveClock
	last  atomic.Int64 // UnixNano
}

func (l *renewLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, r)
	if err == nil {
		l.last.Store(l.clock.Now().UnixNano())
	}
	return err
}

func (l *renewLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, r)
	if err == nil {
		l.last.Store(l.clock.Now().UnixNano())
	}
	return err
}

// sinceRenewal is how long ago the Lease was last written.
func (l *renewLock) sinceRenewal() time.Duration {
	return l.clock.Since(time.Unix(0, l.last.Load()))
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
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
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
	e.renewed = &renewLock{Interface: e.lock, clock: o.Clock}
	e.le, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: e.renewed, LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
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
// checkForbiddenFor before it counts; once it was seen, only another answer
// from the apiserver ends the retries early.
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
		var status apierrors.APIStatus
		if err != nil && last != nil && !errors.As(err, &status) {
			// Not an answer (client-go's rate limiter refuses a request
			// whose wait would pass the deadline, before it passes): the
			// apiserver, which answered Forbidden, has not changed its mind.
			return false, nil
		}
		return true, nil
	})
	switch {
	case err != nil && last != nil:
		return fmt.Errorf("lease %s/%s: %w", e.o.Namespace, e.o.Name, last)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return nil // answered, or could not be reached (hung): no verdict
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
	if e.cur != nil && e.cur.ctx.Err() == nil {
		e.cur.start(job{name, fn})
	}
}

func (t *termJobs) start(j job) {
	t.wg.Go(func() { j.run(t.ctx) })
}

// started is client-go's OnStartedLeading: it reads the Lease's
// transitions for the fence and starts every job, and a watchdog that
// stops them once the Lease has not been renewed for the renew deadline.
func (e *Elector) started(ctx context.Context) {
	f, ok := e.readFence(ctx)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ctx.Err() != nil || e.stopping {
		return
	}
	jctx, cancel := context.WithCancel(ctx)
	t := &termJobs{ctx: jctx, cancel: cancel}
	e.cur = t
	e.fence.Store(&f)
	e.held.Set(1)
	context.AfterFunc(jctx, func() {
		e.fence.Store(nil)
		e.held.Set(0)
	})
	// The watchdog ends client-go's term too: client-go keeps trying to
	// renew for a retry period past the renew deadline, and a renewal that
	// lands then would keep this replica holding the Lease with its jobs
	// stopped, and OnStartedLeading never called again.
	endTerm := e.endTerm
	go e.watchRenewals(jctx, func() {
		cancel()
		endTerm()
	})
	e.o.Log.Info("took the lease of the singleton jobs", "lease", e.o.Namespace+"/"+e.o.Name, "holder", f.Holder, "token", f.Token)
	for _, j := range e.jobs {
		t.start(j)
	}
	e.once.Do(func() { close(e.elected) })
}

// readFence reads the Lease just taken for the fence (its holder and
// spec.leaseTransitions), retrying every RetryPeriod while the read
// fails: leading without a fence would let a stale holder write, and
// giving up would hold the Lease with no job running. ok is false when
// ctx ended or another replica holds the Lease.
func (e *Elector) readFence(ctx context.Context) (store.Fence, bool) {
	for {
		rec, _, err := e.reader.Get(ctx)
		switch {
		case err == nil && rec.HolderIdentity == e.o.Identity:
			return store.Fence{Holder: e.o.Identity, Token: uint64(rec.LeaderTransitions)}, true
		case err == nil:
			return store.Fence{}, false // already taken by another: renew ends ctx
		}
		e.o.Log.Warn("cannot read the lease just taken; retrying before running the singleton jobs", "error", err)
		select {
		case <-ctx.Done():
			return store.Fence{}, false
		case <-e.o.Clock.After(e.o.RetryPeriod):
		}
	}
}

// watchRenewals stops the jobs and ends the term (cancel) once the Lease
// has not been written for the renew deadline: client-go notices it too,
// but returns only after trying to release the Lease, which on an
// apiserver that does not answer takes up to another renew deadline, past
// the lease duration after which another replica may take it.
func (e *Elector) watchRenewals(ctx context.Context, cancel context.CancelFunc) {
	t := e.o.Clock.NewTicker(e.o.RetryPeriod / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if since := e.renewed.sinceRenewal(); since > e.o.RenewDeadline {
			e.o.Log.Warn("the lease was not renewed within the renew deadline; stopping the singleton jobs", "since", since.Round(time.Millisecond))
			cancel()
			return
		}
	}
}

// Run campaigns for the Lease until ctx ends, then stops the jobs (up to
// StopWait) and releases the Lease. A lost Lease (not renewed within the
// renew deadline, as when the apiserver cannot be reached) stops the
// jobs, and once they have returned Run campaigns again: a replica that
// loses the Lease is a follower, not a failure.
func (e *Elector) Run(ctx context.Context) {
	for {
		e.term(ctx)
		if ctx.Err() != nil {
			return
		}
		e.stopJobs(0)
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
	e.mu.Lock()
	e.endTerm = cancel
	e.mu.Unlock()
	ended := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-ctx.Done():
			e.mu.Lock()
			e.stopping = true
			e.mu.Unlock()
			e.stopJobs(e.o.StopWait)
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

// stopJobs ends the current term's jobs and waits for them: up to
// bound on shutdown (the Lease is released after it), else until they
// have returned (a new term must not start beside an old job running
// under the same fence), warning every StopWait.
func (e *Elector) stopJobs(bound time.Duration) {
	e.mu.Lock()
	t := e.cur
	e.cur = nil
	e.mu.Unlock()
	e.fence.Store(nil)
	if t == nil {
		return
	}
	t.cancel()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	waited := time.Duration(0)
	for {
		select {
		case <-done:
			return
		case <-e.o.Clock.After(e.o.StopWait):
		}
		waited += e.o.StopWait
		if bound > 0 && waited >= bound {
			e.o.Log.Warn("the singleton jobs did not stop in time", "waited", waited)
			return
		}
		e.o.Log.Warn("the singleton jobs have not stopped yet; not campaigning again until they have", "waited", waited)
	}
}
