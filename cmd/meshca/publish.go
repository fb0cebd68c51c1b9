package main

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/trustbundle/publish"
)

// startTrustDistribution runs the trust publishers when trustBundle.enabled
// is set, and gives them the active CA material.
func startTrustDistribution(ctx context.Context, cfg *config.Config, rc *rest.Config, m *authority.Material, log *slog.Logger, reg prometheus.Registerer) error {
	if !cfg.TrustBundle.Enabled || rc == nil {
		return nil
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	p, err := publish.New(client, cfg.TrustBundle, publish.WithRegisterer(reg), publish.WithLogger(log))
	if err != nil {
		return fmt.Errorf("trustBundle: %w", err)
	}
	d := publish.Desired{Bundle: m.Bundle, Roots: m.Bundle.Roots, PQAnchors: m.PQAnchorsPEM()}
	if cfg.TrustBundle.PublishCACerts {
		key, ok := m.Signer.(crypto.PrivateKey)
		if !ok || !exportable(key) {
			return fmt.Errorf("trustBundle.publishCACerts: the intermediate key of generation %d lives in a key manager and cannot be written to the cacerts Secret", m.Generation)
		}
		d.Key = key
	}
	if err := p.Update(ctx, d); err != nil {
		return fmt.Errorf("trustBundle: %w", err)
	}
	go func() {
		if err := p.Run(ctx); err != nil {
			log.Error("trust distribution stopped", "error", err)
		}
	}()
	log.Info("publishing trust material", "istiod_namespace", cfg.TrustBundle.IstiodNamespace, "cacerts_secret", cfg.TrustBundle.PublishCACerts)
	return nil
}
