package rootrotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation/intermediate"
)

// Open opens the CA for the service as intermediate.Open does, with the
// configured root source wrapped in the root rotation's Source, so that a
// journaled root rotation decides the roots and the minting root before
// the intermediate manager loads its first generation. It returns the
// runtime, the intermediate manager (already started) and the root
// rotation controller (its Run not yet started). clk nil is the real clock.
//
// The journal wins over the configuration: while a rotation is in
// progress A comes from the journal when the configuration already names
// B, and after a finished rotation B stands in for a configuration that
// still names A (the status says which keys to update).
func Open(ctx context.Context, cfg *config.Config, clk clock.WithTicker, log *slog.Logger, reg prometheus.Registerer, opts ...func(*Options)) (*authority.Runtime, *intermediate.Manager, *Controller, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	rt, err := authority.OpenBase(ctx, cfg, clk, log, reg)
	if err != nil {
		return nil, nil, nil, err
	}
	fail := func(err error) (*authority.Runtime, *intermediate.Manager, *Controller, error) {
		rt.Close()
		return nil, nil, nil, err
	}
	st, ok := rt.Store.(Store)
	if !ok {
		return fail(errors.New("the store keeps no root-rotation journal"))
	}
	// B's source (and A's, from the journal) carry no metrics of their
	// own: a second Vault source would register the first's again.
	newSource := func(ctx context.Context, rc config.RootConfig) (root.Source, error) {
		c := *cfg
		c.Root = rc
		return authority.NewRootSource(ctx, &c, rt.Keys, rt.Store, clk, log, nil)
	}
	old, err := oldSource(ctx, st, cfg.Root, rt.Root, newSource, log)
	if err != nil {
		return fail(err)
	}
	src, srcErr := NewSource(old)
	if srcErr == nil {
		rt.Root = src.RootSource()
		rt.Loader.Root = rt.Root
	} else {
		src = nil
	}
	o := Options{
		Store: st, Source: src, SourceProblem: srcErr, NewSource: newSource, OldRootConfig: cfg.Root, Intermediate: cfg.Intermediate,
		DefaultUncounted: cfg.TrustBundle.PublishCACerts,
		Clock:            clk, Log: log, DefaultCertTTL: cfg.Issuance.DefaultCertTTL.Duration, MaxCertTTL: cfg.Issuance.MaxCertTTL.Duration,
		Waits: store.RootRotationWaits{WorkloadsMin: cfg.Rotation.Root.WorkloadsMinWait.Duration,
			WorkloadsMax: cfg.Rotation.Root.WorkloadsMaxWait.Duration, TTLMax: cfg.Rotation.Root.TTLMaxWait.Duration},
	}
	for _, f := range opts {
		f(&o)
	}
	ctl, err := New(ctx, o)
	if err != nil {
		return fail(err)
	}
	m := intermediate.New(intermediate.Options{Config: cfg, Keys: rt.Keys, Store: rt.Store, Root: rt.Root, Loader: rt.Loader, Clock: clk, Log: log,
		Leader: o.Leader, FollowInterval: o.FollowInterval})
	ctl.o.Intermediates = m
	mat, err := m.Start(ctx)
	if err == nil {
		err = authority.PublishPQAnchor(authority.PQAnchorPath(cfg), mat, log)
	}
	if err != nil {
		return fail(err)
	}
	rt.Start(ctx, mat, true)
	return rt, m, ctl, nil
}

// oldSource is A's source: the configured one, unless a rotation in
// progress finds the configuration (cfgRoot, the root section configured
// builds) already naming its new root; then A's source is rebuilt from
// the journal. The decision is taken from the configuration alone, never
// from what the configured source answers now: a new root that cannot
// answer when meshca starts must not stand in for the old one.
func oldSource(ctx context.Context, st Store, cfgRoot config.RootConfig, configured root.Source, newSource NewSourceFunc, log *slog.Logger) (root.Source, error) {
	rec, err := st.GetRootRotation(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return configured, nil
	}
	if err != nil {
		return nil, fmt.Errorf("root rotation journal: %w", err)
	}
	if !Phase(rec.Phase).InProgress() || len(rec.OldRootSource) == 0 {
		return configured, nil
	}
	newRC, err := decodeRootConfig(rec.NewRootSource)
	if err != nil {
		return nil, fmt.Errorf("root rotation %s: the journaled new root source: %w", rec.ID, err)
	}
	if !sameRoot(cfgRoot, newRC) {
		return configured, nil
	}
	rc, err := decodeRootConfig(rec.OldRootSource)
	if err != nil {
		return nil, fmt.Errorf("root rotation %s: the journaled old root source: %w", rec.ID, err)
	}
	log.Warn("root rotation: the configuration already names the new root while the rotation is in progress; the old root comes from the journal until it is done", "rotation", rec.ID, "phase", rec.Phase, "old_root", describeRoot(rc))
	return newSource(ctx, rc)
}

// sameRoot reports whether two root sections name the same root: the
// same certificate and key files, or the same Vault PKI issuer (address,
// namespace, mount and issuer; authentication and TLS settings aside).
func sameRoot(a, b config.RootConfig) bool {
	if a.Source != b.Source {
		return false
	}
	if a.Source == config.RootSourceVault {
		av, bv := a.Vault, b.Vault
		return strings.TrimRight(av.Address, "/") == strings.TrimRight(bv.Address, "/") && av.Namespace == bv.Namespace &&
			strings.Trim(av.Mount, "/") == strings.Trim(bv.Mount, "/") && av.IssuerRef == bv.IssuerRef
	}
	clean := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Clean(p)
	}
	return clean(a.File.RootCert) == clean(b.File.RootCert) && clean(a.File.RootKey) == clean(b.File.RootKey)
}

// SetIntermediates sets the intermediate manager (when the controller was
// built without one).
func (c *Controller) SetIntermediates(i Intermediates) {
	c.mu.Lock()
	c.o.Intermediates = i
	c.mu.Unlock()
}

// lineage is the intermediate manager of one signer lineage.
type lineage struct {
	signer string // store.DefaultSigner for the default signer
	m      Intermediates
}

func (l lineage) String() string {
	if l.signer == store.DefaultSigner {
		return "the default signer"
	}
	return "signer " + l.signer
}

// AddLineage adds the intermediate manager of a signer with its own
// intermediate (authentication.certSigners): a root rotation publishes
// its roots and switches it to the new root as it does the default
// signer's, after it. Call it before Run.
func (c *Controller) AddLineage(signer string, i Intermediates) {
	c.mu.Lock()
	c.lineages = append(c.lineages, lineage{signer: signer, m: i})
	c.mu.Unlock()
}

// ofLineage names l in an error (" of signer gateways"); nothing while the
// default signer is the only lineage.
func (c *Controller) ofLineage(l lineage) string {
	if len(c.lineages) == 0 {
		return ""
	}
	return " of " + l.String()
}

// lineagesLocked is every signer lineage, the default first; c.mu is held.
func (c *Controller) lineagesLocked() []lineage {
	return append([]lineage{{signer: store.DefaultSigner, m: c.o.Intermediates}}, c.lineages...)
}

// SetAlerts sets where phase and stuck alerts go (serve starts the
// alerting engine after the CA).
func (c *Controller) SetAlerts(a Alerter) {
	c.mu.Lock()
	c.o.Alerts = a
	c.mu.Unlock()
}
