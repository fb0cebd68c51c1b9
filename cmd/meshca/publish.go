package main

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/trustbundle/publish"
)

// trustPublisher runs the trust publishers and keeps the desired material,
// so that the CRL manager can replace ca-crl.pem in it.
type trustPublisher struct {
	p   *publish.Publisher
	log *slog.Logger

	mu      sync.Mutex
	d       publish.Desired
	started bool
}

// newTrustPublisher prepares the trust publishers when trustBundle.enabled
// is set (nil otherwise) with the active CA material; start publishes.
func newTrustPublisher(cfg *config.Config, rc *rest.Config, m *authority.Material, log *slog.Logger, reg prometheus.Registerer, opts ...publish.Option) (*trustPublisher, error) {
	if !cfg.TrustBundle.Enabled || rc == nil {
		return nil, nil
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	p, err := publish.New(client, cfg.TrustBundle, append([]publish.Option{publish.WithRegisterer(reg), publish.WithLogger(log)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("trustBundle: %w", err)
	}
	d := publish.Desired{Bundle: m.Bundle, Roots: m.Bundle.Roots, PQAnchors: m.PQAnchorsPEM()}
	if cfg.TrustBundle.PublishCACerts {
		key, ok := m.Signer.(crypto.PrivateKey)
		if !ok || !exportable(key) {
			return nil, fmt.Errorf("trustBundle.publishCACerts: the intermediate key of generation %d lives in a key manager and cannot be written to the cacerts Secret", m.Generation)
		}
		d.Key = key
	}
	return &trustPublisher{p: p, log: log, d: d}, nil
}

// setCRLs replaces ca-crl.pem (the cacerts Secret's and the CRL
// ConfigMaps'); before start it only becomes part of the first update.
// It is the crl.Manager's Publish.
func (t *trustPublisher) setCRLs(ctx context.Context, caCRL []byte) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.d
	d.CRLs = caCRL
	if t.started {
		if err := t.p.Update(ctx, d); err != nil {
			return fmt.Errorf("trustBundle: %w", err)
		}
	}
	t.d = d
	return nil
}

// start publishes the desired material and reconciles until ctx ends.
func (t *trustPublisher) start(ctx context.Context, cfg *config.Config) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	err := t.p.Update(ctx, t.d)
	t.started = err == nil
	t.mu.Unlock()
	if err != nil {
		return fmt.Errorf("trustBundle: %w", err)
	}
	go func() {
		if err := t.p.Run(ctx); err != nil {
			t.log.Error("trust distribution stopped", "error", err)
		}
	}()
	t.log.Info("publishing trust material", "istiod_namespace", cfg.TrustBundle.IstiodNamespace, "cacerts_secret", cfg.TrustBundle.PublishCACerts,
		"crl_bytes", len(t.d.CRLs))
	return nil
}
