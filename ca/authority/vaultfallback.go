package authority

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/root/vault"
	"github.com/meshca/meshca/ca/store"
)

// rootExpecter is implemented by *vault.Source: it is told the roots
// meshca signs under while Vault is unavailable, and logs an error when
// Vault, once back, serves another root.
type rootExpecter interface {
	ExpectRoots(roots []*x509.Certificate)
}

// loadVaultStored is loadVault while Vault is unavailable (unavailable is
// why): it signs with the active Vault-signed generation of the store if
// it is valid now, its stored chain verifies to the root at its end (the
// pinned root, when root.vault.expectedRootFingerprint is set) and its key
// loads and matches. It never mints: without such a generation meshca has
// nothing to sign with and start-up fails.
func (l *Loader) loadVaultStored(ctx context.Context, unavailable error) (*Material, error) {
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w; and the stored CA generations cannot be read: %w", unavailable, err)
	}
	var g *store.Generation
	for i := len(gens) - 1; i >= 0; i-- {
		if gens[i].Active() && gens[i].Source == vault.SourceVault {
			g = &gens[i]
			break
		}
	}
	if g == nil {
		return nil, fmt.Errorf("%w; and there is no stored intermediate to fall back on (the store holds no active Vault-signed CA generation), so meshca has nothing to sign with until Vault answers", unavailable)
	}
	b, err := l.storedVaultBundle(*g)
	if err == nil {
		var key root.CAKey
		if key, err = l.generationKey(*g, b.Cert); err == nil {
			var m *Material
			if m, err = NewMaterial(g.ID, b, key, profileOf(*g)); err == nil {
				l.log().Warn("Vault is unavailable; signing with the stored Vault-signed intermediate until it answers (no new intermediate is minted meanwhile)",
					"generation", g.ID, "not_after", b.Cert.NotAfter, "root", b.Roots[0].Subject.String(),
					"root_sha256", vault.Fingerprint(b.Roots[0]), "error", unavailable)
				if due := RenewalTime(b.Cert, l.Config.Intermediate.RotationThreshold); !l.now().Before(due) {
					l.log().Warn("the stored intermediate is past its rotation threshold; it is replaced once Vault answers", "generation", g.ID, "renewal_due", due)
				}
				if e, ok := l.Vault.(rootExpecter); ok {
					e.ExpectRoots(b.Roots)
				}
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("%w; and there is no stored intermediate to fall back on: the active Vault-signed CA generation %d is not usable: %w", unavailable, g.ID, err)
}

// storedVaultBundle rebuilds a Vault-signed generation's bundle from the
// store alone: its certificate, the intermediates of its chain and the
// self-signed root that ends it, verified at now.
func (l *Loader) storedVaultBundle(g store.Generation) (*root.Bundle, error) {
	cert, err := x509.ParseCertificate(g.CertDER)
	if err != nil {
		return nil, fmt.Errorf("stored certificate does not parse: %w", err)
	}
	var chain []*x509.Certificate
	for i, der := range g.ChainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("stored chain certificate %d does not parse: %w", i, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("no chain is stored with it")
	}
	top := chain[len(chain)-1]
	inters, roots := root.SplitChain(chain)
	if len(roots) != 1 || !roots[0].Equal(top) {
		return nil, fmt.Errorf("its stored chain does not end at a self-signed root (it ends at %q)", top.Subject)
	}
	if pin := config.NormalizeFingerprint(l.Config.Root.Vault.ExpectedRootFingerprint); pin != "" && vault.Fingerprint(top) != pin {
		return nil, fmt.Errorf("root.vault.expectedRootFingerprint: its root %q has SHA-256 %s, not the expected %s", top.Subject, vault.Fingerprint(top), pin)
	}
	b := &root.Bundle{Cert: cert, Intermediates: inters, Roots: roots}
	if err := b.Verify(l.now()); err != nil {
		return nil, fmt.Errorf("it does not verify to its stored root now: %w", err)
	}
	return b, nil
}
