package authority

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// pqAnchors is where a CA generation's post-quantum chain is anchored.
type pqAnchors struct {
	anchors []pqc.TrustAnchor
	pem     []byte
	// atIntermediate: no root carries a post-quantum key that verifies
	// the chain (a classical enterprise root), so the anchor is meshca's
	// own intermediate key.
	atIntermediate bool
}

// computePQAnchors works out the trusted post-quantum keys of a CA of
// profile p: every root's post-quantum key (its ML-DSA or composite SPKI,
// or its Catalyst 2.5.29.72) when the chain's PQ signatures verify up to
// one of them; otherwise (an enterprise root that is classical only)
// meshca's own intermediate key: the catalyst ML-DSA key, or the composite
// or ML-DSA signing key.
func computePQAnchors(b *root.Bundle, key root.CAKey, p profile.Name) (pqAnchors, error) {
	if !p.PostQuantum() {
		return pqAnchors{}, nil
	}
	var out pqAnchors
	for _, r := range b.Roots {
		if a, err := pqc.AnchorFromCertificate(r); err == nil {
			out.anchors = append(out.anchors, a)
		}
	}
	if len(out.anchors) == 0 || b.VerifyPQ(out.anchors...) != nil {
		own := key.Signer
		if p == profile.Catalyst {
			own = key.Alt
		}
		spki, err := pqc.MarshalPKIXPublicKey(own.Public())
		if err != nil {
			return pqAnchors{}, err
		}
		a, err := pqc.AnchorFromPublicKeyInfo("meshca intermediate "+b.Cert.Subject.String(), spki)
		if err != nil {
			return pqAnchors{}, err
		}
		out.anchors = []pqc.TrustAnchor{a}
		out.atIntermediate = true
	}
	for _, a := range out.anchors {
		out.pem = append(out.pem, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: a.PublicKeyInfo()})...)
	}
	return out, nil
}

// PQAnchors returns the post-quantum trust anchors of the CA: the keys a
// PQ-aware relying party must trust to verify meshca's ML-DSA alternative
// chain (catalyst) or its composite or ML-DSA chain. Empty for a classical
// CA. See PQAnchoredAtIntermediate for the classical-enterprise-root case.
func (m *Material) PQAnchors() []pqc.TrustAnchor { return m.pq.anchors }

// PQAnchorsPEM returns PQAnchors as "PUBLIC KEY" PEM blocks (DER
// SubjectPublicKeyInfo), the content of pq-anchor.pem; nil for a classical
// CA. Trust distribution publishes this.
func (m *Material) PQAnchorsPEM() []byte { return m.pq.pem }

// PQAnchoredAtIntermediate reports that no root carries a post-quantum key
// (a classical enterprise root), so the post-quantum chain is anchored at
// meshca's own intermediate key. That key changes when the intermediate
// rotates, and it protects only what the intermediate signs: the
// enterprise root's own signature stays classical.
func (m *Material) PQAnchoredAtIntermediate() bool { return m.pq.atIntermediate }

// PQAnchorPath is where meshca writes the PQ trust anchor for cfg:
// pq-anchor.pem in cfg.LocalDir(), next to the bbolt store
// (DIR/pq-anchor.pem in a --dir layout) or, with PostgreSQL, next to the
// admin socket.
func PQAnchorPath(cfg *config.Config) string {
	return filepath.Join(cfg.LocalDir(), config.PQAnchorFile)
}

// PublishPQAnchor writes m's PQ trust anchors to path (pq-anchor.pem,
// PQAnchorPath; 0644) when they changed, atomically, or removes the file
// for a classical CA so that no stale anchor is left behind.
func PublishPQAnchor(path string, m *Material, log *slog.Logger) error {
	want := m.PQAnchorsPEM()
	if len(want) == 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove stale post-quantum anchor: %w", err)
		}
		return nil
	}
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pq-anchor-*.pem")
	if err != nil {
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(want); err != nil {
		tmp.Close()
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write post-quantum anchor: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	log.Info("published post-quantum trust anchor", "path", path, "anchored_at_intermediate", m.PQAnchoredAtIntermediate())
	return nil
}
