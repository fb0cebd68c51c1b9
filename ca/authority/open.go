package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/root/vault"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storeopen"
)

// Runtime is an opened CA: its authority and the resources behind it.
type Runtime struct {
	Authority *Authority
	Store     store.Store
	Keys      *keys.Manager
	// Loader reads the CA generations (read-only).
	Loader *Loader
	// Root is the root source (Loader.Root): it mints intermediates and,
	// when Capabilities().RootCRL, supplies the root's CRL for ca-crl.pem.
	Root root.Source
	pol  *policy.Engine
	reg  prometheus.Registerer
	stop context.CancelFunc
}

// Close releases the store and the key manager.
func (r *Runtime) Close() error {
	if r.stop != nil {
		r.stop() // ends the root source's background work
	}
	return errors.Join(r.Store.Close(), r.Keys.Close())
}

// NewRootSource builds the root source that cfg's root section selects:
// a Vault PKI mount (root.source vault), a pre-issued intermediate
// (root.file.cacertsDir) or a root in files (root.file.rootCert and
// rootKey). It is the one place that asks which kind of root meshca has.
// clk is the clock of the file sources (nil for the real one). A Vault
// that is unavailable does not fail it: the source completes its checks
// once Vault answers (vault.WithDeferredValidation). A Vault source keeps
// the root CRLs it takes in st (root.CRLMemory).
func NewRootSource(ctx context.Context, cfg *config.Config, km *keys.Manager, st store.Store, clk clock.PassiveClock, log *slog.Logger, reg prometheus.Registerer) (root.Source, error) {
	f := cfg.Root.File
	switch {
	case cfg.Root.Source == config.RootSourceVault:
		src, err := vault.New(ctx, cfg.Root.Vault, vault.WithLogger(log), vault.WithRegisterer(reg), vault.WithDeferredValidation(),
			vault.WithCRLMemory(root.NewCRLMemory(st)))
		if err != nil {
			return nil, err // not a nil *vault.Source in a non-nil interface
		}
		return src, nil
	case !f.Minted():
		return &root.CACertsSource{Dir: f.CACertsDir, Profile: cfg.Intermediate.Profile, Keys: km, Clock: clk}, nil
	default:
		return &root.FileSource{RootCert: f.RootCert, RootKey: f.RootKey, RootPQKey: f.RootPQKey, Profile: cfg.Intermediate.Profile, Keys: km, Clock: clk}, nil
	}
}

// OpenBase validates cfg and opens the key store, the record store and
// the root source: everything an opened CA holds except its signing
// material, which the caller loads with rt.Loader (read-only) or has the
// intermediate rotation manager (rotation/intermediate) decide, and then
// passes to Start. clk is the clock of the loader and the file root
// sources (nil for the real one). The caller closes the Runtime.
func OpenBase(ctx context.Context, cfg *config.Config, clk clock.PassiveClock, log *slog.Logger, reg prometheus.Registerer) (*Runtime, error) {
	return openBase(ctx, cfg, clk, log, reg, storeopen.Open)
}

// openBase is OpenBase with the store opened by openStore: storeopen.Open
// for the service, which may start on an empty store, or
// storeopen.OpenExisting for offline commands, which need a CA.
func openBase(ctx context.Context, cfg *config.Config, clk clock.PassiveClock, log *slog.Logger, reg prometheus.Registerer,
	openStore func(context.Context, config.StoreConfig, *slog.Logger) (store.Store, error)) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	pol, err := PolicyFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	km, err := keys.Open(ctx, cfg.KeyStore)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Store, log)
	if err != nil {
		km.Close()
		return nil, err
	}
	loader := &Loader{Config: cfg, Keys: km, Store: st, Log: log, Clock: clk}
	if loader.Root, err = NewRootSource(ctx, cfg, km, st, clk, log, reg); err != nil {
		st.Close()
		km.Close()
		return nil, err
	}
	return &Runtime{Store: st, Keys: km, Loader: loader, Root: loader.Root, pol: pol, reg: reg}, nil
}

// Start makes the runtime sign with m: it builds the Authority from the
// configuration and, with runRoot, starts the root source's background
// work (health checks, token renewal, CRL refresh) until Close.
func (r *Runtime) Start(ctx context.Context, m *Material, runRoot bool) {
	cfg, log := r.Loader.Config, r.Loader.Log
	if runRoot {
		runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		r.stop = stop
		go r.Root.Run(runCtx)
	}
	r.Authority = New(m, r.pol, r.Store, WithAudit(audit.New(log)), WithRegisterer(r.reg), WithProfile(cfg.Issuance.Profile),
		WithVerifySignatures(VerifyModeOf(cfg.Issuance.VerifySignatures)), WithCRLURL(cfg.CRL.URL))
}

// OpenReadOnly opens the CA for offline commands (meshca sign, meshca
// cacerts): it signs with the active generation of the store and never
// mints, records or activates one, nor writes pq-anchor.pem, nor starts
// the root source's background work. When the store holds no active
// generation that is good to sign with (none, expired, past its
// activation threshold, or not matching the configuration) it fails with
// ErrNoActiveGeneration, saying to run meshca serve; with no store at all
// it fails with storeopen.ErrNoStore and creates none. The service (meshca
// serve) and meshca init open the CA through the intermediate rotation
// manager instead, which mints and activates.
func OpenReadOnly(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Runtime, error) {
	rt, err := openBase(ctx, cfg, nil, log, nil, storeopen.OpenExisting)
	if err != nil {
		return nil, err
	}
	m, err := rt.Loader.LoadActive(ctx)
	if err != nil {
		rt.Close()
		return nil, err
	}
	rt.Start(ctx, m, false)
	return rt, nil
}

// PolicyFromConfig builds the issuance policy engine from cfg.
func PolicyFromConfig(cfg *config.Config) (*policy.Engine, error) {
	return policyFrom(cfg, cfg.Issuance.Policies, cfg.Issuance.MaxCertTTL.Duration)
}

// CertSignerPolicy builds the policy engine of a named Istio CertSigner
// (authentication.certSigners): issuance's trust domain, default lifetime
// and CRL distribution points, with the signer's maximum lifetime and its
// own exceptions in place of issuance.policies.
func CertSignerPolicy(cfg *config.Config, s config.CertSignerConfig) (*policy.Engine, error) {
	return policyFrom(cfg, s.Policies, s.MaxCertTTL.Duration)
}

func policyFrom(cfg *config.Config, policies []config.PolicyConfig, maxTTL time.Duration) (*policy.Engine, error) {
	var rules []*policy.Rule
	for _, p := range policies {
		r, err := policy.NewRule(p.Name, p.Identities, p.DNSNames, p.IPRanges, p.AllowCommonName, p.MaxCertTTL.Duration)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return policy.New(policy.Options{
		TrustDomain:           cfg.TrustDomain,
		DefaultTTL:            cfg.Issuance.DefaultCertTTL.Duration,
		MaxTTL:                maxTTL,
		CRLDistributionPoints: cfg.Issuance.CRLDistributionPoints,
		Rules:                 rules,
	}), nil
}
