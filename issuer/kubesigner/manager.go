package kubesigner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// ManagerOptions configure the shared manager.
//
// The manager elects no leader of its own: with several replicas, serve
// runs it only while this replica holds the Lease of the singleton jobs
// (rotation/leader), so that one replica at a time writes certificates and
// bundles.
type ManagerOptions struct {
	// GracefulShutdown bounds how long the controllers get to finish on
	// shutdown (default 10 s).
	GracefulShutdown time.Duration
	Log              *slog.Logger
	Metrics          *Metrics
}

// NewManager builds one controller-runtime manager for every controller
// in cs: one scheme, one cache restricted by every controller's Cache. Its own metrics and health servers are off: meshca serves
// meshca_controller_* on its ops listener. Start it with Start(ctx).
func NewManager(rc *rest.Config, o ManagerOptions, cs ...Controller) (ctrl.Manager, error) {
	if len(cs) == 0 {
		return nil, errors.New("no controllers to run")
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	byObject := map[client.Object]cache.ByObject{}
	names := map[string]bool{}
	for _, c := range cs {
		if names[c.Name()] {
			return nil, fmt.Errorf("two controllers named %q", c.Name())
		}
		names[c.Name()] = true
		if err := c.AddToScheme(scheme); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name(), err)
		}
		for obj, by := range c.Cache() {
			for have := range byObject {
				if fmt.Sprintf("%T", have) == fmt.Sprintf("%T", obj) {
					return nil, fmt.Errorf("%s: the cache of %T is already restricted by another controller", c.Name(), obj)
				}
			}
			byObject[obj] = by
		}
	}
	if o.GracefulShutdown <= 0 {
		o.GracefulShutdown = 10 * time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	logger := logr.FromSlogHandler(log.With("component", "controllers").Handler())
	recoverPanic := true
	opts := ctrl.Options{
		Scheme:                  scheme,
		Logger:                  logger,
		Cache:                   cache.Options{ByObject: byObject},
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		GracefulShutdownTimeout: &o.GracefulShutdown,
		Controller:              config.Controller{RecoverPanic: &recoverPanic},
	}
	mgr, err := ctrl.NewManager(rc, opts)
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	for _, c := range cs {
		if err := c.SetupWithManager(mgr, o.Metrics); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name(), err)
		}
	}
	if o.Metrics != nil {
		if err := mgr.Add(leaderRunnable{mgr: mgr, m: o.Metrics}); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// leaderRunnable sets meshca_controller_leader once this replica leads.
type leaderRunnable struct {
	mgr ctrl.Manager
	m   *Metrics
}

func (l leaderRunnable) NeedLeaderElection() bool { return false }

func (l leaderRunnable) Start(ctx context.Context) error {
	select {
	case <-l.mgr.Elected():
		l.m.leader.Set(1)
	case <-ctx.Done():
	}
	<-ctx.Done()
	l.m.leader.Set(0)
	return nil
}
