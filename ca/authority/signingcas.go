package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
)

// SigningCA is a CA whose CRL meshca signs: a generation of meshca's
// intermediate or, when meshca holds its key, the root.
type SigningCA struct {
	// Generation is the CA generation; 0 for the root.
	Generation uint64
	// Signer is the generation's signer lineage (store.Generation.Signer).
	Signer string
	Root   bool
	// Minting: a root new intermediates are minted under (during a root
	// rotation another root in force has its own CRL too).
	Minting bool
	Cert    *x509.Certificate
	Key     crypto.Signer
	// Alt is a catalyst CA's ML-DSA key (the alternative signature of X.509
	// clause 9.8); nil for the other profiles.
	Alt certenc.AlgorithmSigner
}

// SigningCAs returns the CAs whose CRLs meshca signs (RFC 5280 section 5:
// each CRL is signed by the CA whose certificates it lists), in the order
// of ca-crl.pem: the active generation, then every other generation whose
// leaves may still be in use (its certificate unexpired and, once retired,
// for at most the lineage's maxCertTTL), of every signer lineage (a signer
// with its own intermediate, authentication.certSigners, has its own
// generations and CRLs), newest first, then every root in force whose key
// meshca holds, the minting one first (root.HeldRoots: root.file.rootCert
// and rootKey; during a root rotation the old and the new root, each
// signing the CRL of the intermediates it issued). A retired generation
// whose key no longer loads is skipped with a warning: its CRL cannot be
// signed.
func (r *Runtime) SigningCAs(ctx context.Context, now time.Time) ([]SigningCA, error) {
	m := r.Authority.Material()
	out := []SigningCA{{Generation: m.Generation, Cert: m.Bundle.Cert, Key: m.Signer, Alt: m.AltSigner}}
	gens, err := r.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	maxTTL := maxCertTTLs(r.Loader.Config)
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if g.ID == m.Generation || g.ActivatedAt.IsZero() {
			continue
		}
		if !g.RetiredAt.IsZero() && now.After(g.RetiredAt.Add(maxTTL(g.Lineage()))) {
			continue
		}
		cert, err := x509.ParseCertificate(g.CertDER)
		if err != nil || now.After(cert.NotAfter) {
			continue
		}
		key, err := r.Loader.GenerationKey(g, cert)
		if err != nil {
			r.Loader.log().Warn("no CRL for a retired CA generation: its key does not load", "generation", g.ID, "error", err)
			continue
		}
		out = append(out, SigningCA{Generation: g.ID, Signer: g.Signer, Cert: cert, Key: key.Signer, Alt: key.Alt})
	}
	held, err := root.HeldRoots(r.Root)
	if err != nil {
		return nil, err
	}
	for _, h := range held {
		out = append(out, SigningCA{Root: true, Minting: h.Minting, Cert: h.Cert, Key: h.Key.Signer, Alt: h.Key.Alt})
	}
	return out, nil
}

// maxCertTTLs returns the longest lifetime a signer lineage issues: a
// retired generation's leaves stay in use that long after it retired.
func maxCertTTLs(cfg *config.Config) func(signer string) time.Duration {
	def := cfg.Issuance.MaxCertTTL.Duration
	return func(signer string) time.Duration {
		for _, s := range cfg.Authentication.CertSigners {
			if s.Name == signer && s.Intermediate.Separate {
				return max(def, s.MaxCertTTL.Duration)
			}
		}
		return def
	}
}

// CertChain is cert-chain.pem of the active generation: the intermediate up
// to the root. Istio wants a CRL from each of them in ca-crl.pem.
func (r *Runtime) CertChain() []*x509.Certificate {
	return r.Authority.Material().Bundle.Chain()
}
