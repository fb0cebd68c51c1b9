package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
)

// openCA opens the CA for serve: the intermediate rotation manager
// resumes its journal and decides (minting and activating when needed)
// the active generation.
func openCA(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*authority.Runtime, *intermediate.Manager, error) {
	rt, m, err := openRotating(ctx, cfg, log, reg)
	if err != nil {
		return nil, nil, err
	}
	if reg != nil {
		if err := rotation.RegisterMetrics(reg, m); err != nil {
			rt.Close()
			return nil, nil, err
		}
	}
	return rt, m, nil
}

// subscribeRotation is the one place where serve subscribes to the
// intermediate rotation: every rotation.Change (an activation, new roots,
// a retired generation leaving its grace period) reaches these
// subscribers, in order. The signing engine switches first; the fan-out
// (Istio endpoint chain, serving certificate, trust publisher and
// cacerts, pq-anchor.pem, CRL issuers) follows.
func subscribeRotation(m *intermediate.Manager, cfg *config.Config, rt *authority.Runtime, log *slog.Logger) {
	m.Subscribe(func(_ context.Context, c rotation.Change) error {
		rt.Authority.SetMaterial(c.Active)
		return nil
	})
	m.Subscribe(func(_ context.Context, c rotation.Change) error {
		return authority.PublishPQAnchor(authority.PQAnchorPath(cfg), c.Active, log)
	})
}
