package authority

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/root/vault"
	"github.com/meshca/meshca/ca/store"
)

// Generation sources, as recorded in the store.
const (
	SourceFileMinted  = "file-minted"
	SourceFileCACerts = "file-cacerts"
)

// Loader turns configuration into signing material: it reuses the active
// generation recorded in the store when it is still good, and otherwise
// mints (mode a) or registers (mode b) a new one, for the configured
// profile (intermediate.profile). It publishes the post-quantum trust
// anchor of the result as pq-anchor.pem.
type Loader struct {
	Config *config.Config
	Keys   *keys.Manager
	Store  store.Generations
	Log    *slog.Logger
	Now    func() time.Time
	// Vault signs the intermediate when root.source is vault; nil otherwise.
	Vault vault.IntermediateSigner
}

func (l *Loader) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Loader) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.Default()
}

func (l *Loader) profile() profile.Name { return l.Config.Intermediate.Profile }

// Load returns the material to sign with.
func (l *Loader) Load(ctx context.Context) (*Material, error) {
	var (
		m   *Material
		err error
	)
	f := l.Config.Root.File
	if l.Config.Root.Source == "vault" {
		m, err = l.loadVault(ctx)
	} else if !f.Minted() {
		m, err = l.loadCACerts(ctx, f.CACertsDir)
	} else {
		var (
			roots   []*x509.Certificate
			rootKey root.CAKey
			ok      bool
		)
		if roots, rootKey, err = l.loadRoot(f); err != nil {
			return nil, err
		}
		if m, ok, err = l.reuseActive(ctx, roots, rootKey, SourceFileMinted); err == nil && !ok {
			m, err = l.mint(ctx, roots, rootKey)
		}
	}
	if err != nil {
		return nil, err
	}
	return m, l.publishPQAnchor(m)
}

// profileOf is a generation's profile; records from before profiles are
// classical.
func profileOf(g store.Generation) profile.Name {
	if g.Profile == "" {
		return profile.Classical
	}
	return profile.Name(g.Profile)
}

// reuseActive returns the active generation if it was minted for the
// configured profile and post-quantum algorithm, chains to one of roots
// (classically and, under a Catalyst root, through its alternative
// signature too), its keys load and it has not passed the rotation
// threshold.
func (l *Loader) reuseActive(ctx context.Context, roots []*x509.Certificate, rootKey root.CAKey, source string) (*Material, bool, error) {
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("read CA generations: %w", err)
	}
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if !g.Active() || g.Source != source {
			continue
		}
		if p := profileOf(g); p != l.profile() {
			l.log().Info("intermediate.profile changed; minting a new intermediate", "generation", g.ID, "was", p, "now", l.profile())
			return nil, false, nil
		}
		cert, err := x509.ParseCertificate(g.CertDER)
		if err != nil {
			return nil, false, fmt.Errorf("CA generation %d: stored certificate does not parse: %w", g.ID, err)
		}
		b := &root.Bundle{Cert: cert, Roots: roots}
		now := l.now()
		if err := b.Verify(now); err != nil {
			l.log().Info("active intermediate no longer chains to the configured root; minting a new one", "generation", g.ID, "error", err)
			return nil, false, nil
		}
		if rootKey.Alt != nil && l.profile() == profile.Catalyst {
			if err := b.VerifyPQ(mustAnchor(roots[0])); err != nil {
				l.log().Info("active intermediate has no alternative signature from the Catalyst root; minting a new one", "generation", g.ID, "error", err)
				return nil, false, nil
			}
		}
		if due := RenewalTime(cert, l.Config.Intermediate.RotationThreshold); !now.Before(due) {
			l.log().Info("active intermediate passed its rotation threshold; minting a new one", "generation", g.ID, "renewal_due", due)
			return nil, false, nil
		}
		key, err := l.generationKey(g, cert)
		if err != nil {
			return nil, false, err
		}
		if alg := pqAlgorithmOf(key, l.profile()); alg != l.Config.Intermediate.PQAlgorithm {
			l.log().Info("intermediate.pqAlgorithm changed; minting a new intermediate", "generation", g.ID, "was", alg, "now", l.Config.Intermediate.PQAlgorithm)
			return nil, false, nil
		}
		m, err := NewMaterial(g.ID, b, key, l.profile())
		if err != nil {
			return nil, false, fmt.Errorf("CA generation %d: %w", g.ID, err)
		}
		return m, true, nil
	}
	return nil, false, nil
}

// mustAnchor trusts a root's post-quantum key; a root without one yields
// an anchor that verifies nothing.
func mustAnchor(c *x509.Certificate) pqc.TrustAnchor {
	a, _ := pqc.AnchorFromCertificate(c)
	return a
}

// generationKey loads a generation's keys and checks them against cert.
func (l *Loader) generationKey(g store.Generation, cert *x509.Certificate) (root.CAKey, error) {
	signer, err := l.Keys.Signer(g.KeyRef)
	if err != nil {
		return root.CAKey{}, fmt.Errorf("CA generation %d: %w", g.ID, err)
	}
	if err := root.CheckKeyMatches(cert, signer); err != nil {
		return root.CAKey{}, fmt.Errorf("CA generation %d key %s: %w", g.ID, g.KeyRef, err)
	}
	key := root.CAKey{Signer: signer}
	if profileOf(g) == profile.Catalyst {
		if g.AltKeyRef == "" {
			return root.CAKey{}, fmt.Errorf("CA generation %d is catalyst but records no ML-DSA key (altKeyRef)", g.ID)
		}
		if key.Alt, err = l.Keys.LoadPQ(g.AltKeyRef); err != nil {
			return root.CAKey{}, fmt.Errorf("CA generation %d: %w", g.ID, err)
		}
		if alt, _ := root.AltPublicKeyInfo(cert); alt != nil {
			if err := root.CheckAltKeyMatches(cert, key.Alt); err != nil {
				return root.CAKey{}, fmt.Errorf("CA generation %d key %s: %w", g.ID, g.AltKeyRef, err)
			}
		}
	}
	return key, nil
}

// pqAlgorithmOf names the post-quantum key of a CA of profile p ("" for
// classical): the catalyst ML-DSA key, or the composite/ML-DSA signer.
func pqAlgorithmOf(key root.CAKey, p profile.Name) string {
	switch p {
	case profile.Catalyst:
		if key.Alt != nil {
			return keys.PQAlgorithmOf(key.Alt.Public())
		}
	case profile.Composite, profile.MLDSA:
		return keys.PQAlgorithmOf(key.Signer.Public())
	}
	return ""
}

// RenewalTime is when an intermediate should be replaced: after threshold
// of its lifetime has elapsed.
func RenewalTime(c *x509.Certificate, threshold float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * threshold))
}

func (l *Loader) record(ctx context.Context, b *root.Bundle, keyRef, altKeyRef, source string, now time.Time) (store.Generation, error) {
	var chain [][]byte
	for _, c := range b.Chain()[1:] {
		chain = append(chain, c.Raw)
	}
	g, err := l.Store.AddGeneration(ctx, store.Generation{
		CertDER: b.Cert.Raw, ChainDER: chain, KeyRef: keyRef, AltKeyRef: altKeyRef,
		Profile: string(l.profile()), Source: source,
		Fingerprint: Fingerprint(b.Cert), CreatedAt: now.UTC(),
	})
	if err != nil {
		return g, fmt.Errorf("record CA generation: %w", err)
	}
	if err := l.Store.ActivateGeneration(ctx, g.ID, now.UTC()); err != nil {
		return g, fmt.Errorf("activate CA generation %d: %w", g.ID, err)
	}
	return g, nil
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// loadVault reuses the active Vault-signed generation, or has Vault sign a
// new intermediate for a key created in the key store. While Vault is
// unavailable it signs with the stored generation (loadVaultStored) and
// never mints.
func (l *Loader) loadVault(ctx context.Context) (*Material, error) {
	roots, err := l.Vault.Roots(ctx)
	if errors.Is(err, vault.ErrUnavailable) {
		return l.loadVaultStored(ctx, err)
	}
	if err != nil {
		return nil, err
	}
	if m, ok, err := l.reuseActive(ctx, roots, root.CAKey{}, vault.SourceVault); err != nil || ok {
		return m, err
	}
	ic, now := l.Config.Intermediate, l.now()
	b, signer, ref, err := vault.MintGeneration(ctx, l.Vault, l.Keys, ic.KeyAlgorithm, root.IntermediateTemplate{
		CommonName: ic.CommonName, Organization: ic.Organization, Lifetime: ic.Lifetime.Duration,
	}, now)
	if err != nil {
		return nil, err
	}
	g, err := l.record(ctx, b, ref, "", vault.SourceVault, now)
	if err != nil {
		return nil, err
	}
	l.log().Info("vault signed a new intermediate", "generation", g.ID, "not_after", b.Cert.NotAfter, "key_ref", ref)
	return NewMaterial(g.ID, b, root.CAKey{Signer: signer}, profile.Classical)
}
