package authority

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// Generation sources, as recorded in the store.
const (
	SourceFileMinted  = "file-minted"
	SourceFileCACerts = "file-cacerts"
)

// Loader turns configuration into signing material: it reuses the active
// generation recorded in the store when it is still good, and otherwise
// mints (mode a) or registers (mode b) a new one.
type Loader struct {
	Config *config.Config
	Keys   *keys.Manager
	Store  store.Generations
	Log    *slog.Logger
	Now    func() time.Time
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

// Load returns the material to sign with.
func (l *Loader) Load(ctx context.Context) (*Material, error) {
	f := l.Config.Root.File
	if !f.Minted() {
		return l.loadCACerts(ctx, f.CACertsDir)
	}
	roots, rootSigner, err := l.loadRoot(f)
	if err != nil {
		return nil, err
	}
	if m, ok, err := l.reuseActive(ctx, roots); err != nil || ok {
		return m, err
	}
	return l.Mint(ctx, roots, rootSigner)
}

// loadRoot reads root-cert.pem (first certificate is the signing root; any
// others are additional trust anchors, e.g. during root rotation) and its key.
func (l *Loader) loadRoot(f config.FileRootConfig) ([]*x509.Certificate, crypto.Signer, error) {
	roots, err := root.ReadCertificates(f.RootCert)
	if err != nil {
		return nil, nil, fmt.Errorf("root.file.rootCert %w", err)
	}
	if err := root.CheckSigningCA(roots[0]); err != nil {
		return nil, nil, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if err := root.CheckValidAt(roots[0], l.now()); err != nil {
		return nil, nil, fmt.Errorf("root.file.rootCert %s: root %w", f.RootCert, err)
	}
	signer, err := l.Keys.Signer(f.RootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("root.file.rootKey: %w", err)
	}
	if err := root.CheckKeyMatches(roots[0], signer); err != nil {
		return nil, nil, fmt.Errorf("root.file.rootKey %s: %w", f.RootKey, err)
	}
	return roots, signer, nil
}

// reuseActive returns the active generation if it chains to one of roots,
// its key loads and it has not passed the rotation threshold.
func (l *Loader) reuseActive(ctx context.Context, roots []*x509.Certificate) (*Material, bool, error) {
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("read CA generations: %w", err)
	}
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if !g.Active() || g.Source != SourceFileMinted {
			continue
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
		if due := RenewalTime(cert, l.Config.Intermediate.RotationThreshold); !now.Before(due) {
			l.log().Info("active intermediate passed its rotation threshold; minting a new one", "generation", g.ID, "renewal_due", due)
			return nil, false, nil
		}
		signer, err := l.Keys.Signer(g.KeyRef)
		if err != nil {
			return nil, false, fmt.Errorf("CA generation %d: %w", g.ID, err)
		}
		if err := root.CheckKeyMatches(cert, signer); err != nil {
			return nil, false, fmt.Errorf("CA generation %d key %s: %w", g.ID, g.KeyRef, err)
		}
		return NewMaterial(g.ID, b, signer), true, nil
	}
	return nil, false, nil
}

// RenewalTime is when an intermediate should be replaced: after threshold
// of its lifetime has elapsed.
func RenewalTime(c *x509.Certificate, threshold float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * threshold))
}

// Mint creates a new intermediate key in the key store, signs it with the
// root, records it as a new generation and activates it.
func (l *Loader) Mint(ctx context.Context, roots []*x509.Certificate, rootSigner crypto.Signer) (*Material, error) {
	ic := l.Config.Intermediate
	now := l.now()
	name := "intermediate-" + now.UTC().Format("20060102T150405.000000000Z")
	signer, ref, err := l.Keys.Create(name, ic.KeyAlgorithm)
	if err != nil {
		return nil, err
	}
	cert, err := root.MintIntermediate(roots[0], rootSigner, signer.Public(), root.IntermediateTemplate{
		CommonName: ic.CommonName, Organization: ic.Organization, Lifetime: ic.Lifetime.Duration,
	}, now)
	if err != nil {
		return nil, err
	}
	b := &root.Bundle{Cert: cert, Roots: roots}
	if err := b.Verify(now); err != nil {
		return nil, fmt.Errorf("freshly minted intermediate does not verify: %w", err)
	}
	g, err := l.record(ctx, b, ref, SourceFileMinted, now)
	if err != nil {
		return nil, err
	}
	l.log().Info("minted intermediate", "generation", g.ID, "subject", cert.Subject.String(),
		"not_after", cert.NotAfter, "key_algorithm", string(ic.KeyAlgorithm), "key_ref", ref)
	return NewMaterial(g.ID, b, signer), nil
}

func (l *Loader) record(ctx context.Context, b *root.Bundle, keyRef, source string, now time.Time) (store.Generation, error) {
	var chain [][]byte
	for _, c := range b.Chain()[1:] {
		chain = append(chain, c.Raw)
	}
	g, err := l.Store.AddGeneration(ctx, store.Generation{
		CertDER: b.Cert.Raw, ChainDER: chain, KeyRef: keyRef, Source: source,
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

// loadCACerts loads a pre-issued intermediate (mode b) and records it as a
// generation the first time it is seen.
func (l *Loader) loadCACerts(ctx context.Context, dir string) (*Material, error) {
	b, signer, err := root.LoadCACertsDir(dir, l.Keys.Signer, l.now())
	if err != nil {
		return nil, fmt.Errorf("root.file.cacertsDir: %w", err)
	}
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	fp := Fingerprint(b.Cert)
	for _, g := range gens {
		if g.Fingerprint == fp && g.Active() {
			return NewMaterial(g.ID, b, signer), nil
		}
	}
	g, err := l.record(ctx, b, dir+"/"+root.CAKeyFile, SourceFileCACerts, l.now())
	if err != nil {
		return nil, err
	}
	return NewMaterial(g.ID, b, signer), nil
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
