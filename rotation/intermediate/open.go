package intermediate

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
)

// Open opens the CA for the service (meshca serve) and meshca init: the
// key store, the record store and the root source (authority.OpenBase),
// then the Manager, which resumes the rotation journal and decides the
// active generation (minting and activating one when needed), and the
// Authority signing with it. It publishes the post-quantum trust anchor
// (pq-anchor.pem). The caller subscribes to the Manager and runs it (go
// m.Run(ctx)), and closes the Runtime. clk nil is the real clock.
func Open(ctx context.Context, cfg *config.Config, clk clock.WithTicker, log *slog.Logger, reg prometheus.Registerer) (*authority.Runtime, *Manager, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	rt, err := authority.OpenBase(ctx, cfg, clk, log, reg)
	if err != nil {
		return nil, nil, err
	}
	m := New(Options{Config: cfg, Keys: rt.Keys, Store: rt.Store, Root: rt.Root, Loader: rt.Loader, Clock: clk, Log: log})
	mat, err := m.Start(ctx)
	if err == nil {
		err = authority.PublishPQAnchor(authority.PQAnchorPath(cfg), mat, log)
	}
	if err != nil {
		rt.Close()
		return nil, nil, err
	}
	rt.Start(ctx, mat, true)
	return rt, m, nil
}
