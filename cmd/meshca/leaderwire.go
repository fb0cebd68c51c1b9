package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/rotation/leader"
	"github.com/meshca/meshca/rotation/rootrotation"
)

// defaultFollowInterval is how often a replica reads what other processes
// recorded in a shared store, without a Lease retry period configured.
const defaultFollowInterval = 2 * time.Second

// singletons runs serve's singleton jobs (rotation steps, CRL
// publication, alert delivery, store pruning, the Kubernetes controllers
// and the trust publisher): with kubernetes configured and
// signers.controllers.leaderElection on, only while this replica holds
// that one Lease (rotation/leader); otherwise (one replica) right away.
type singletons struct {
	ctx context.Context
	el  *leader.Elector // nil: one replica
	// follow is how often a follower's intermediate managers read the
	// store (the Lease's retry period).
	follow        time.Duration
	leaseDuration time.Duration
	done          chan struct{}
	// jobs are the jobs Go started without a Lease.
	jobs sync.WaitGroup
	// stopped is wait's: one bound however often serve waits.
	stopped func()
}

// startSingletons campaigns for the Lease until ctx ends. Losing it (the
// apiserver cannot be reached for the renew deadline) stops the singleton
// jobs and this replica campaigns again, signing all along. With store.type
// bolt, whose issuance records are local to one process, a replica that
// observes another Lease holder calls fail too: the client-certificate
// authenticator needs the record of every certificate a renewing client
// presents, which only a shared store (PostgreSQL) has.
func startSingletons(ctx context.Context, cfg *config.Config, rc *rest.Config, log *slog.Logger, reg prometheus.Registerer, fail func(error)) (*singletons, error) {
	s := &singletons{ctx: ctx, done: make(chan struct{})}
	s.stopped = sync.OnceFunc(s.waitOnce)
	le := cfg.Signers.Controllers.LeaderElection
	if rc == nil || !le.On() {
		close(s.done)
		return s, nil
	}
	el, err := leader.New(rc, leader.Options{
		Namespace: le.Namespace, Name: le.LeaseName,
		LeaseDuration: le.LeaseDuration.Duration, RenewDeadline: le.RenewDeadline.Duration, RetryPeriod: le.RetryPeriod.Duration,
		Log: log.With("component", "lease"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	if err := el.Check(ctx); err != nil {
		return nil, fmt.Errorf("signers.controllers.leaderElection: %w; meshca's singleton jobs (rotation, CRLs, revocations, alerts) run only on the holder of this Lease: "+
			"grant get, create and update on it (deploy/rbac/controllers.yaml), or set signers.controllers.leaderElection.enabled: false for a single replica", err)
	}
	s.el, s.follow, s.leaseDuration = el, le.RetryPeriod.Duration, le.LeaseDuration.Duration
	if s.leaseDuration <= 0 {
		s.leaseDuration = 15 * time.Second
	}
	if s.follow <= 0 {
		s.follow = defaultFollowInterval
	}
	go func() {
		defer close(s.done)
		el.Run(ctx)
	}()
	if cfg.Store.Type == config.StoreBolt {
		go s.refuseSharedBolt(ctx, fail)
	}
	log.Info("singleton jobs run under the Lease", "lease", le.Namespace+"/"+le.LeaseName, "holder_identity", el.Identity())
	return s, nil
}

// refuseSharedBolt ends serve when another replica holds the Lease while
// this one keeps its records in a local bbolt file.
func (s *singletons) refuseSharedBolt(ctx context.Context, fail func(error)) {
	t := time.NewTicker(s.follow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if h := s.el.Holder(); h != "" && h != s.el.Identity() {
			fail(fmt.Errorf("another replica (%s) holds the lease of the singleton jobs, but store.type is bolt: "+
				"each replica's issuance records are its own, so a client certificate issued by one cannot be renewed at another; "+
				"run several replicas on store.type postgres, or one replica (replicaCount: 1)", h))
			return
		}
	}
}

// Go runs fn as a singleton job.
func (s *singletons) Go(name string, fn func(ctx context.Context)) {
	if s.el == nil {
		s.jobs.Go(func() { fn(s.ctx) })
		return
	}
	s.el.Go(name, fn)
}

// followStore calls fn every retry period of the Lease (2 s without one)
// on every replica, the Lease holder included, when the store is shared
// (PostgreSQL), until ctx ends. Other processes write such a store: the
// other replicas, a previous Lease holder finishing a request after
// another replica took over, 'meshca revoke' run with another host's
// configuration. A bbolt store is one process's: its file lock keeps the
// CLI out while serve runs, and the CLI goes through the admin socket.
func (s *singletons) followStore(shared bool, name string, log *slog.Logger, fn func(context.Context) error) {
	if !shared {
		return
	}
	every := s.follow
	if s.el == nil || every <= 0 {
		every = defaultFollowInterval
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			if err := fn(s.ctx); err != nil && s.ctx.Err() == nil {
				log.Warn("reading what other processes recorded in the store failed; retrying", "job", name, "error", err)
			}
		}
	}()
}

// leading is the intermediate managers' Leader (nil: one replica).
func (s *singletons) leading() intermediate.Leader {
	if s.el == nil {
		return nil
	}
	return s.el
}

// leads reports whether this replica holds the Lease (nil: one replica,
// always).
func (s *singletons) leads() func() bool {
	if s == nil || s.el == nil {
		return nil
	}
	return func() bool {
		s.settle()
		_, ok := s.el.Leading()
		return ok
	}
}

// settle waits, while this replica has not yet observed any holder of
// the Lease (just started: its first attempt to take it is under way),
// up to one lease duration, so that an admin request right after start
// is not refused by the replica about to lead.
func (s *singletons) settle() {
	if s == nil || s.el == nil {
		return
	}
	deadline := time.Now().Add(s.leaseDuration)
	for s.el.Holder() == "" && time.Now().Before(deadline) && s.ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	// The holder is observed before its jobs start (the fence is read).
	if s.el.Holder() == s.el.Identity() {
		for _, lead := s.el.Leading(); !lead && time.Now().Before(deadline) && s.ctx.Err() == nil; _, lead = s.el.Leading() {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// rotationOptions hands the Lease to the default intermediate Manager.
func (s *singletons) rotationOptions(o *rootrotation.Options) {
	o.Leader, o.FollowInterval = s.leading(), s.follow
}

// wait blocks, after ctx ended, until the jobs stopped and the Lease was
// released (bounded by managerStopWait).
// serve waits from several places; they share that bound.
func (s *singletons) wait() { s.stopped() }

func (s *singletons) waitOnce() {
	jobs := make(chan struct{})
	go func() {
		<-s.done
		s.jobs.Wait()
		close(jobs)
	}()
	select {
	case <-jobs:
	case <-time.After(managerStopWait):
	}
}
