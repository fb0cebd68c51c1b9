package main

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/crl"
	"github.com/meshca/meshca/issuer/kubesigner"
	"github.com/meshca/meshca/trustbundle/publish"
)

// trustPublisher feeds the trust publisher and keeps the desired material,
// so that the CRL manager can replace ca-crl.pem in it.
type trustPublisher struct {
	p   *publish.Publisher
	log *slog.Logger

	// caCerts is trustBundle.publishCACerts.
	caCerts bool

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
	t := &trustPublisher{p: p, log: log, caCerts: cfg.TrustBundle.PublishCACerts}
	if err := t.material(&t.d, m); err != nil {
		return nil, err
	}
	return t, nil
}

// material sets d's CA material to m's: the signing certificate and chain,
// the roots, the PQ trust anchors and, with trustBundle.publishCACerts,
// the intermediate's key.
func (t *trustPublisher) material(d *publish.Desired, m *authority.Material) error {
	d.Bundle, d.Roots, d.PQAnchors, d.Key = m.Bundle, m.Bundle.Roots, m.PQAnchorsPEM(), nil
	if t.caCerts {
		key, ok := m.Signer.(crypto.PrivateKey)
		if !ok || !exportable(key) {
			return fmt.Errorf("trustBundle.publishCACerts: the intermediate key of generation %d lives in a key manager and cannot be written to the cacerts Secret", m.Generation)
		}
		d.Key = key
	}
	return nil
}

// setMaterial publishes a rotation's active material (rotation.Change):
// a new intermediate, or new roots. The cacerts Secret gets ca-cert.pem,
// ca-key.pem and cert-chain.pem of the new intermediate in one write,
// with root-cert.pem under the byte-append rule (publish.Publisher). With
// ca-crl.pem in use, the new cert-chain.pem is published only once
// ca-crl.pem holds a CRL from each of its certificates (the CRL manager's
// SetIssuers runs first): Istio refuses the Secret otherwise, so until
// then nothing changes and the error says what is missing.
func (t *trustPublisher) setMaterial(ctx context.Context, m *authority.Material) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.d
	if err := t.material(&d, m); err != nil {
		return err
	}
	if len(d.CRLs) > 0 {
		missing, err := crl.MissingCRLs(m.Bundle.Chain(), d.CRLs)
		if err != nil {
			return fmt.Errorf("trustBundle: %w", err)
		}
		if len(missing) > 0 {
			return fmt.Errorf("trustBundle: generation %d is not published yet: ca-crl.pem has no CRL from %s", m.Generation, strings.Join(missing, ", "))
		}
	}
	if t.started {
		if err := t.p.Update(ctx, d); err != nil {
			return fmt.Errorf("trustBundle: %w", err)
		}
	}
	t.d = d
	return nil
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

// start hands the publisher the desired material; it publishes it once it
// runs on the controller manager (controller), on the replica that holds
// the Lease.
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
	t.log.Info("publishing trust material", "istiod_namespace", cfg.TrustBundle.IstiodNamespace, "cacerts_secret", cfg.TrustBundle.PublishCACerts,
		"crl_bytes", len(t.d.CRLs))
	return nil
}

// controller is the publisher as one of the controllers on meshca's
// manager (nil when trust distribution is off).
func (t *trustPublisher) controller() kubesigner.Controller {
	if t == nil {
		return nil
	}
	return trustController{t.p}
}

// trustController adapts publish.Publisher to kubesigner.Controller
// (trustbundle/ does not import issuer/).
type trustController struct{ p *publish.Publisher }

func (trustController) Name() string { return "trustbundle" }

// AddToScheme: the publisher reads core and certificates.k8s.io types,
// which the manager's client-go scheme already has.
func (trustController) AddToScheme(*runtime.Scheme) error { return nil }

func (c trustController) Cache() map[client.Object]cache.ByObject { return c.p.Cache() }

func (c trustController) SetupWithManager(mgr ctrl.Manager, _ *kubesigner.Metrics) error {
	return c.p.SetupWithManager(mgr)
}

// HasSynced reports whether the publisher's informers have synced and it
// has reconciled once (it waits for them without a timeout).
func (c trustController) HasSynced() bool { return c.p.HasSynced() }

// Prepare discovers the served ClusterTrustBundle version, which Cache
// needs, waiting while the apiserver cannot be reached.
func (c trustController) Prepare(ctx context.Context) error { return c.p.Discover(ctx) }
