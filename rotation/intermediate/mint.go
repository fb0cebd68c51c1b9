package intermediate

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// mint creates the successor's keys in the key store, has the root
// source sign them (only public keys and a CSR leave meshca), checks what
// it returns against the keys and roots (under a Catalyst root, the
// alternative signature too) and records it as a prepared generation:
// the first journal step.
func (m *Manager) mint(ctx context.Context) (store.Generation, error) {
	ic := m.cfg.Intermediate
	p := ic.Profile
	now := m.clk.Now()
	tmpl := root.IntermediateTemplate{CommonName: ic.CommonName, Organization: ic.Organization, Lifetime: ic.Lifetime.Duration}
	if !m.src.Capabilities().Mint {
		// The source's own CannotMintError (errors.Is root.ErrCannotMint),
		// before any key is created.
		_, err := m.src.MintIntermediate(ctx, root.IntermediateRequest{Template: tmpl, Now: now})
		if err == nil {
			err = &root.CannotMintError{Kind: m.src.Kind(), Reason: "the root source cannot mint"}
		}
		return store.Generation{}, err
	}
	// The time names the key for people; the random suffix keeps two
	// mints at the same instant (a clock that did not move) apart.
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return store.Generation{}, err
	}
	name := "intermediate-"
	if m.loader.Signer != store.DefaultSigner {
		// Each signer lineage's keys carry its name, apart from the default's.
		name += "signer-" + m.loader.Signer + "-"
	}
	name += now.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(suffix[:])
	key, ref, altRef, err := m.createCAKey(name, p)
	if err != nil {
		return store.Generation{}, err
	}
	req, err := root.NewIntermediateRequest(key, tmpl, now)
	if err != nil {
		return store.Generation{}, err
	}
	b, err := m.src.MintIntermediate(ctx, req)
	if err != nil {
		return store.Generation{}, fmt.Errorf("%w (the unused key %s stays in the key store)", err, ref)
	}
	cert := b.Cert
	if err := root.CheckKeyMatches(cert, key.Signer); err != nil {
		return store.Generation{}, fmt.Errorf("intermediate minted by the root source: %w", err)
	}
	if key.Alt != nil {
		if err := root.CheckAltKeyMatches(cert, key.Alt); err != nil {
			return store.Generation{}, fmt.Errorf("intermediate minted by the root source: %w", err)
		}
	}
	if err := b.Verify(now); err != nil {
		return store.Generation{}, fmt.Errorf("freshly minted intermediate does not verify: %w", err)
	}
	if err := authority.CheckCatalystRoot(b, p); err != nil {
		return store.Generation{}, fmt.Errorf("freshly minted intermediate's alternative signature does not verify: %w", err)
	}
	rec := authority.NewGenerationRecord(b, ref, altRef, m.src.Kind(), p, now)
	rec.Signer = m.loader.Signer
	g, err := m.st.AddGeneration(ctx, rec)
	if err != nil {
		return store.Generation{}, fmt.Errorf("record the prepared CA generation: %w", err)
	}
	m.log.Info("prepared intermediate", "generation", g.ID, "root_source", m.src.Kind(), "subject", cert.Subject.String(),
		"not_after", cert.NotAfter, "profile", string(p), "key_algorithm", root.KeyName(key.Signer.Public()),
		"pq_algorithm", authority.PQAlgorithmOf(key, p), "key_ref", ref, "alt_key_ref", altRef,
	)
	m.step(StepPrepared, g.ID)
	return g, nil
}

// createCAKey creates the keys a CA of profile p holds, in the key store:
// a classical key (classical), a classical and an ML-DSA key (catalyst),
// or one composite or ML-DSA key (composite, mldsa).
func (m *Manager) createCAKey(name string, p profile.Name) (key root.CAKey, ref, altRef string, err error) {
	ic := m.cfg.Intermediate
	switch p {
	case profile.Composite, profile.MLDSA:
		key.Signer, ref, err = m.keys.CreatePQ(name, ic.PQAlgorithm)
		return key, ref, "", err
	case profile.Catalyst:
		// The ML-DSA key first: a key store that cannot hold it fails
		// before anything is created.
		if key.Alt, altRef, err = m.keys.CreatePQ(name+"-"+strings.ToLower(ic.PQAlgorithm), ic.PQAlgorithm); err != nil {
			return key, "", "", err
		}
	}
	key.Signer, ref, err = m.keys.Create(name, ic.KeyAlgorithm)
	return key, ref, altRef, err
}

// verify loads a prepared generation from the journal and the key store,
// as a restart would, signs a throwaway leaf with it and verifies that
// leaf (authority.Material.SelfTest), and journals the generation as
// verified: the second journal step.
func (m *Manager) verify(ctx context.Context, g store.Generation, roots []*x509.Certificate) (*authority.Material, error) {
	mat, err := m.loader.GenerationMaterial(g, roots)
	if err != nil {
		return nil, fmt.Errorf("prepared CA generation %d does not load: %w", g.ID, err)
	}
	if err := m.checkUnrevoked(ctx, mat); err != nil {
		return nil, err
	}
	if err := mat.SelfTest(m.clk.Now()); err != nil {
		return nil, fmt.Errorf("prepared CA generation %d failed its throwaway-leaf check: %w", g.ID, err)
	}
	if g.VerifiedAt.IsZero() {
		if err := m.st.MarkGenerationVerified(ctx, g.ID, m.clk.Now().UTC()); err != nil {
			return nil, fmt.Errorf("record CA generation %d as verified: %w", g.ID, err)
		}
	}
	m.step(StepVerified, g.ID)
	return mat, nil
}

// errRevokedSuccessor is matched by the error of a prepared generation
// that the store records as revoked.
var errRevokedSuccessor = errors.New("revoked before its activation")

// checkUnrevoked refuses a prepared generation whose intermediate the
// store records as revoked: an operator may revoke a successor whose key
// leaked before it signed anything (crl.Revoker accepts that), and a
// revoked CA must never sign, as every leaf under it fails validation
// (RFC 5280 section 6.3).
func (m *Manager) checkUnrevoked(ctx context.Context, mat *authority.Material) error {
	err := m.loader.CheckStillUnrevoked(ctx, mat)
	var unusable *authority.UnusableError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unusable):
		return fmt.Errorf("prepared CA generation %d is %w: it never signs", mat.Generation, errRevokedSuccessor)
	default:
		return err
	}
}

// preparedSuccessor returns the newest prepared generation that can
// succeed the active one (after, newer than it; of the root source's kind
// and the configured profile) and loads under roots, verifying it (and
// journaling that when it has not been verified yet); nil if there is
// none. A prepared generation that does not load or verify is left as it
// is, logged, and not used.
func (m *Manager) preparedSuccessor(ctx context.Context, after uint64, roots []*x509.Certificate) (*authority.Material, error) {
	gens, err := m.st.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	// Only a generation prepared after the last one that was ever
	// activated can succeed it: older prepared ones were abandoned.
	m.warnAbandoned(ctx, gens)
	after = max(after, store.LastActivated(gens, m.loader.Signer))
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if g.ID <= after || g.Lineage() != m.loader.Signer || g.State() != store.StatePrepared || g.Source != m.src.Kind() || authority.ProfileOf(g) != m.cfg.Intermediate.Profile {
			continue
		}
		mat, err := m.verify(ctx, g, roots)
		if err != nil {
			m.log.Warn("a prepared CA generation cannot succeed the active one; it is left unused", "generation", g.ID, "error", err)
			continue
		}
		m.log.Info("resuming with the prepared CA generation from the journal", "generation", g.ID)
		return mat, nil
	}
	return nil, nil
}

// warnAbandoned logs, once per generation, each abandoned generation of
// m's lineage (store.States) whose intermediate certificate is still
// valid and not revoked: a CA certificate the root vouches for, whose keys
// are in the key store, that meshca will never sign with. An operator
// revokes it (so that relying parties checking the root's CRL refuse it)
// and may then delete its keys. A generation whose revocation cannot be
// read now is left for the next call.
func (m *Manager) warnAbandoned(ctx context.Context, gens []store.Generation) {
	states := store.States(gens)
	revs, _ := m.st.(store.Revocations)
	now := m.clk.Now()
	for _, g := range gens {
		if states[g.ID] != store.StateAbandoned || g.Lineage() != m.loader.Signer || m.abandoned[g.ID] {
			continue
		}
		c, err := x509.ParseCertificate(g.CertDER)
		if err != nil || !now.Before(c.NotAfter) {
			continue
		}
		serial := hex.EncodeToString(c.SerialNumber.Bytes())
		if revs != nil {
			rev, err := revs.GetRevocation(ctx, serial)
			switch {
			case err == nil && rev.Kind == store.KindIntermediate && rev.Generation == g.ID:
				continue
			case err != nil && !errors.Is(err, store.ErrNotFound):
				continue
			}
		}
		if m.abandoned == nil {
			m.abandoned = map[uint64]bool{}
		}
		m.abandoned[g.ID] = true
		m.log.Warn("a CA generation was prepared but never activated, and never will be (a newer one of its lineage was activated since); "+
			"its intermediate certificate stays valid and its keys stay in the key store",
			"generation", g.ID, "serial", serial, "not_after", c.NotAfter, "key_ref", g.KeyRef, "alt_key_ref", g.AltKeyRef,
			"action", fmt.Sprintf("meshca revoke --generation %d --reason superseded; then delete the keys named by key_ref and alt_key_ref", g.ID))
	}
}

// warnAbandonedNow is warnAbandoned on the store's generations now (after
// an activation, which may abandon a prepared generation); a failed read
// is left for the next rotation step.
func (m *Manager) warnAbandonedNow(ctx context.Context) {
	if gens, err := m.st.ListGenerations(ctx); err == nil {
		m.warnAbandoned(ctx, gens)
	}
}
