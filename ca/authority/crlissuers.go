package authority

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/meshca/meshca/crl"
)

// CRLIssuers returns the CAs whose CRLs meshca signs (RFC 5280 section 5:
// each CRL is signed by the CA whose certificates it lists), in the order
// of ca-crl.pem: the active generation, then every other generation whose
// leaves may still be in use (its certificate unexpired and, once retired,
// for at most issuance.maxCertTTL), then the root when meshca holds the
// root key (root.file.rootCert and rootKey). A retired generation whose key
// no longer loads is skipped with a warning: its CRL cannot be signed.
func (r *Runtime) CRLIssuers(ctx context.Context, now time.Time) ([]crl.Issuer, error) {
	m := r.Authority.Material()
	out := []crl.Issuer{{
		Scope: crl.ScopeGeneration(m.Generation), Generation: m.Generation, Cert: m.Bundle.Cert,
		Signer: crl.Signer{Key: m.Signer, Alt: m.AltSigner},
	}}
	gens, err := r.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	maxTTL := r.Loader.Config.Issuance.MaxCertTTL.Duration
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if g.ID == m.Generation || g.ActivatedAt.IsZero() {
			continue
		}
		if !g.RetiredAt.IsZero() && now.After(g.RetiredAt.Add(maxTTL)) {
			continue
		}
		cert, err := x509.ParseCertificate(g.CertDER)
		if err != nil || now.After(cert.NotAfter) {
			continue
		}
		key, err := r.Loader.generationKey(g, cert)
		if err != nil {
			r.Loader.log().Warn("no CRL for a retired CA generation: its key does not load", "generation", g.ID, "error", err)
			continue
		}
		out = append(out, crl.Issuer{Scope: crl.ScopeGeneration(g.ID), Generation: g.ID, Cert: cert, Signer: crl.Signer{Key: key.Signer, Alt: key.Alt}})
	}
	f := r.Loader.Config.Root.File
	if r.Loader.Config.Root.Source != "file" || !f.Minted() {
		return out, nil
	}
	roots, rootKey, err := r.Loader.loadRoot(f)
	if err != nil {
		return nil, err
	}
	return append(out, crl.Issuer{Scope: crl.ScopeRoot, Cert: roots[0], Signer: crl.Signer{Key: rootKey.Signer, Alt: rootKey.Alt}}), nil
}

// CertChain is cert-chain.pem of the active generation: the intermediate up
// to the root. Istio wants a CRL from each of them in ca-crl.pem.
func (r *Runtime) CertChain() []*x509.Certificate {
	return r.Authority.Material().Bundle.Chain()
}
