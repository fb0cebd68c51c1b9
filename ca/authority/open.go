package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca/audit"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/root/vault"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
)

// Runtime is an opened CA: its authority and the resources behind it.
type Runtime struct {
	Authority *Authority
	Store     store.Store
	Keys      *keys.Manager
	Loader    *Loader
	// Vault is the Vault root source when root.source is vault: its
	// CurrentCRL is the root's CRL for ca-crl.pem.
	Vault *vault.Source
	stop  context.CancelFunc
}

// Close releases the store and the key manager.
func (r *Runtime) Close() error {
	if r.stop != nil {
		r.stop() // ends the Vault source's background loops
	}
	return errors.Join(r.Store.Close(), r.Keys.Close())
}

// Open validates cfg, opens the key store and the record store, loads (or
// mints) the signing material and returns a ready Authority.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*Runtime, error) {
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
	st, err := boltstore.Open(cfg.Store.Path, boltstore.WithCommitDelay(cfg.Store.CommitDelayOrDefault()))
	if err != nil {
		km.Close()
		return nil, err
	}
	loader := &Loader{Config: cfg, Keys: km, Store: st, Log: log}
	var src *vault.Source
	if cfg.Root.Source == "vault" {
		// A Vault unavailable at start-up does not stop meshca when the store
		// holds a usable Vault-signed intermediate (Loader.loadVaultStored);
		// the source completes its checks once Vault answers.
		if src, err = vault.New(ctx, cfg.Root.Vault, vault.WithLogger(log), vault.WithRegisterer(reg), vault.WithDeferredValidation()); err != nil {
			st.Close()
			km.Close()
			return nil, err
		}
		loader.Vault = src // only when set: a nil *Source in the interface is not nil
	}
	m, err := loader.Load(ctx)
	if err != nil {
		st.Close()
		km.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	if src != nil {
		go src.Run(runCtx)
	}
	a := New(m, pol, st, WithAudit(audit.New(log)), WithRegisterer(reg), WithProfile(cfg.Issuance.Profile),
		WithVerifySignatures(VerifyModeOf(cfg.Issuance.VerifySignatures)), WithCRLURL(cfg.CRL.URL))
	return &Runtime{Authority: a, Store: st, Keys: km, Loader: loader, Vault: src, stop: stop}, nil
}

// PolicyFromConfig builds the issuance policy engine from cfg.
func PolicyFromConfig(cfg *config.Config) (*policy.Engine, error) {
	var rules []*policy.Rule
	for _, p := range cfg.Issuance.Policies {
		r, err := policy.NewRule(p.Name, p.Identities, p.DNSNames, p.IPRanges, p.AllowCommonName, p.MaxCertTTL.Duration)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return policy.New(policy.Options{
		TrustDomain:           cfg.TrustDomain,
		DefaultTTL:            cfg.Issuance.DefaultCertTTL.Duration,
		MaxTTL:                cfg.Issuance.MaxCertTTL.Duration,
		CRLDistributionPoints: cfg.Issuance.CRLDistributionPoints,
		Rules:                 rules,
	}), nil
}
