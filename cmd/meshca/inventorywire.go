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
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation/inventory"
	"github.com/meshca/meshca/trustbundle/publish"
)

// inventoryParts are what the alert rules read of the inventory: the CA
// certificate sources and the workload inventory (nil when off).
type inventoryParts struct {
	sources []inventory.Source
	// expiring are the sources CACertificateExpiring alerts on: not the
	// ClusterTrustBundles (rules.CAExpiry), whose source down would only
	// keep the rule from clearing.
	expiring  []inventory.Source
	workloads *inventory.Workloads
	secrets   *inventory.SecretScan
}

// registerInventory registers the CA inventory (expiry timestamps computed
// at scrape time) and the store's health with reg. meshca's own roots and
// generations are always reported; with a cluster (rc non-nil) so are the
// cacerts Secret in trustBundle.istiodNamespace, whoever wrote it, and
// meshca's own ClusterTrustBundles (bundleSelectors), read from informers
// that run until ctx ends. The
// workload inventory (per namespace, from the issuance records) is
// registered unless inventory.workloads.enabled is false.
func registerInventory(ctx context.Context, cfg *config.Config, rt *authority.Runtime, rc *rest.Config, log *slog.Logger, reg prometheus.Registerer) (*inventoryParts, error) {
	var scan *inventory.SecretScan
	caSource := &inventory.CASource{
		Roots:       func() []*x509.Certificate { return rt.Authority.Material().Bundle.Roots },
		Active:      func() uint64 { return rt.Authority.Material().Generation },
		Generations: rt.Store,
		// A retired generation stays published while its leaves may be
		// valid, as its CRL does (authority.Runtime.SigningCAs).
		Grace: cfg.Issuance.MaxCertTTL.Duration,
	}
	sources := []inventory.Source{caSource}
	expiring := []inventory.Source{caSource}
	if rc != nil {
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		k, err := inventory.NewKube(client, cfg.TrustBundle.IstiodNamespace, publish.SecretName, bundleSelectors(cfg), inventory.WithKubeLogger(log))
		if err != nil {
			return nil, fmt.Errorf("certificate inventory: %w", err)
		}
		k.Start(ctx)
		sources = append(sources, k.CACerts())
		expiring = append(expiring, k.CACerts())
		if b := k.ClusterTrustBundles(); b != nil {
			sources = append(sources, b)
		}
		if scan = newSecretScan(cfg, client, inventory.Intermediates(caSource), log); scan != nil {
			scan.Start(ctx)
			if err := reg.Register(scan.Collector()); err != nil {
				return nil, err
			}
		}
	}
	if err := reg.Register(inventory.NewCollector(sources, inventory.WithLogger(log))); err != nil {
		return nil, err
	}
	if h, ok := rt.Store.(interface{ Healthy() error }); ok {
		if err := reg.Register(inventory.NewStoreHealth(h.Healthy)); err != nil {
			return nil, err
		}
	}
	if j, ok := rt.Store.(interface{ JournalCollector() prometheus.Collector }); ok { // the embedded store
		if err := reg.Register(j.JournalCollector()); err != nil {
			return nil, err
		}
	}
	parts := &inventoryParts{sources: sources, expiring: expiring, secrets: scan}
	if w := newWorkloadInventory(cfg, rt, log); w != nil {
		if err := reg.Register(w.Collector()); err != nil {
			return nil, err
		}
		parts.workloads = w
	}
	return parts, nil
}

// bundleSelectors select, on the apiserver, the ClusterTrustBundles meshca
// publishes (trustbundle/publish): those linked to one of its signers and
// carrying that signer's label. Anyone else's bundles are never watched.
func bundleSelectors(cfg *config.Config) []inventory.BundleSelector {
	var out []inventory.BundleSelector
	for _, s := range publish.BundleSigners(cfg.TrustBundle.ClusterTrustBundles) {
		out = append(out, inventory.BundleSelector{SignerName: s, LabelSelector: publish.BundleLabelSelector(s)})
	}
	return out
}

// newWorkloadInventory is the workload inventory over the store's expiry
// index, or nil when it is switched off or the store has no such index.
func newWorkloadInventory(cfg *config.Config, rt *authority.Runtime, log *slog.Logger) *inventory.Workloads {
	wc := cfg.Inventory.Workloads
	idx, ok := rt.Store.(store.ExpiryIndex)
	if !wc.IsEnabled() || !ok {
		return nil
	}
	return &inventory.Workloads{Index: idx, MaxNamespaces: wc.MaxNamespaces, Refresh: wc.Refresh.Duration, Log: log}
}

// newSecretScan is the scan of workload certificate Secrets
// (inventory.secretScan, opt-in), or nil when it is switched off. Only
// leaves that meshca's intermediates (issuers) signed feed its alert.
func newSecretScan(cfg *config.Config, client kubernetes.Interface, issuers func() []*x509.Certificate, log *slog.Logger) *inventory.SecretScan {
	sc := cfg.Inventory.SecretScan
	if !sc.IsEnabled() || len(sc.Selectors) == 0 {
		return nil
	}
	sels := make([]inventory.SecretSelector, len(sc.Selectors))
	for i, s := range sc.Selectors {
		sels[i] = inventory.SecretSelector{Type: s.Type, LabelSelector: s.LabelSelector}
	}
	log.Info("scanning workload certificate Secrets (inventory.secretScan); only their certificates' validity is kept", "selectors", len(sels))
	return inventory.NewSecretScan(client, sels, sc.MaxNamespaces, issuers)
}
