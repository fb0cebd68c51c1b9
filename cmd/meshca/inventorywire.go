package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/trustbundle/publish"
)

// registerInventory registers the CA inventory (expiry timestamps computed
// at scrape time) and the store's health with reg. meshca's own roots and
// generations are always reported; with a cluster (rc non-nil) so are the
// cacerts Secret in trustBundle.istiodNamespace, whoever wrote it, and the
// ClusterTrustBundles, read from informers that run until ctx ends. It
// returns the sources, which meshca status reads too.
func registerInventory(ctx context.Context, cfg *config.Config, rt *authority.Runtime, rc *rest.Config, log *slog.Logger, reg prometheus.Registerer) ([]inventory.Source, error) {
	sources := []inventory.Source{&inventory.CASource{
		Roots:       func() []*x509.Certificate { return rt.Authority.Material().Bundle.Roots },
		Active:      func() uint64 { return rt.Authority.Material().Generation },
		Generations: rt.Store,
		// A retired generation stays published while its leaves may be
		// valid, as its CRL does (authority.Runtime.SigningCAs).
		Grace: cfg.Issuance.MaxCertTTL.Duration,
	}}
	if rc != nil {
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		k, err := inventory.NewKube(client, cfg.TrustBundle.IstiodNamespace, publish.SecretName)
		if err != nil {
			return nil, fmt.Errorf("certificate inventory: %w", err)
		}
		k.Start(ctx)
		sources = append(sources, k.CACerts())
		if b := k.ClusterTrustBundles(); b != nil {
			sources = append(sources, b)
		}
	}
	if err := reg.Register(inventory.NewCollector(sources, inventory.WithLogger(log))); err != nil {
		return nil, err
	}
	if h, ok := rt.Store.(interface{ Healthy() error }); ok {
		return sources, reg.Register(inventory.NewStoreHealth(h.Healthy))
	}
	return sources, nil
}
