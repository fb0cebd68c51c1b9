package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

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
}

// kubeControllers builds the enabled Kubernetes-native signers. Each
// front door's wiring lives in its own file (csrwire.go, podcertwire.go,
// certmanagerwire.go) and adds itself here.
func kubeControllers(d controllerDeps) ([]kubesigner.Controller, error) {
	var cs []kubesigner.Controller
	for _, build := range []func(controllerDeps) (kubesigner.Controller, error){
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

// startControllers runs cs on one controller-runtime manager until ctx
// ends; if the manager stops early (leadership lost, a cache that cannot
// sync) it calls fail, which ends serve: another replica takes over.
func startControllers(ctx context.Context, d controllerDeps, cs []kubesigner.Controller, fail func(error)) error {
	if len(cs) == 0 {
		return nil
	}
	rc := rest.CopyConfig(d.rc)
	rc.QPS, rc.Burst = d.cfg.Signers.Controllers.QPS, d.cfg.Signers.Controllers.Burst
	le := d.cfg.Signers.Controllers.LeaderElection
	mgr, err := kubesigner.NewManager(rc, kubesigner.ManagerOptions{
		LeaderElection: le.On(), LeaseNamespace: le.Namespace, LeaseName: le.LeaseName,
		Log: d.log, Metrics: kubesigner.NewMetrics(d.reg),
	}, cs...)
	if err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fail(fmt.Errorf("kubernetes controllers stopped: %w", err))
		}
	}()
	return nil
}
