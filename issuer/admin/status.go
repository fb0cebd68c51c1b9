package admin

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// GenerationInfo describes one CA generation (an intermediate).
type GenerationInfo struct {
	ID      uint64 `json:"id"`
	Profile string `json:"profile,omitempty"`
	Source  string `json:"source"`
	// Signer is the signer lineage (authentication.certSigners with their
	// own intermediate); empty for the default signer.
	Signer      string    `json:"signer,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
	RetiredAt   time.Time `json:"retiredAt,omitzero"`
	Active      bool      `json:"active"`
	// State is active, retired, prepared or abandoned (store.States);
	// StateName reads it.
	State string `json:"state"`
	// Revoked is set when the generation's intermediate is revoked (it is
	// on its root's CRL): its revocation record's reason and time.
	Revoked *GenerationRevocation `json:"revoked,omitempty"`
	// cert is the parsed certificate, for LiveStatus.
	cert *x509.Certificate
}

// GenerationRevocation is the revocation of a generation's intermediate.
type GenerationRevocation struct {
	Seq       uint64    `json:"seq"`
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revokedAt"`
}

// StoreState is what StoreStatus reads.
type StoreState struct {
	TrustDomain string
	// Path is the store's location, for the answer.
	Path        string
	Generations store.Generations
	// Revocations, when the store keeps them, gives LastRevocationSeq.
	Revocations store.Revocations
	// Healthy reports the store's health (nil: healthy).
	Healthy func() error
}

// StoreStatus builds a Status from the store: the CA generations (the
// active one's intermediate), the store's health and the last revocation.
// The running service and the CLI against a stopped service use it alike;
// CRLs are added by the server from its CRLSource.
func StoreStatus(ctx context.Context, s StoreState) Status {
	st := Status{TrustDomain: s.TrustDomain, Store: Health{Path: s.Path, Healthy: true}, CRLs: []CRLInfo{}, Generations: []GenerationInfo{}}
	fail := func(err error) {
		if st.Store.Healthy {
			st.Store.Healthy, st.Store.Error = false, err.Error()
		}
	}
	if s.Healthy != nil {
		if err := s.Healthy(); err != nil {
			fail(err)
		}
	}
	gens, err := s.Generations.ListGenerations(ctx)
	if err != nil {
		fail(err)
	}
	states := store.States(gens)
	for _, g := range gens {
		gi := GenerationInfo{ID: g.ID, Profile: g.Profile, Source: g.Source, Signer: g.Signer, ActivatedAt: g.ActivatedAt, RetiredAt: g.RetiredAt,
			Active: g.Active(), State: string(states[g.ID])}
		if c, err := x509.ParseCertificate(g.CertDER); err == nil {
			gi.Subject, gi.NotAfter, gi.cert = c.Subject.String(), c.NotAfter, c
		}
		if gi.Active && g.Lineage() == store.DefaultSigner {
			st.Generation, st.Profile, st.IntermediateSubject, st.IntermediateNotAfter = g.ID, g.Profile, gi.Subject, gi.NotAfter
		}
		st.Generations = append(st.Generations, gi)
	}
	if s.Revocations != nil {
		if st.LastRevocationSeq, err = s.Revocations.LastRevocationSeq(ctx); err != nil {
			fail(err)
		}
		if err := markRevoked(ctx, s.Revocations, gens, st.Generations); err != nil {
			fail(err)
		}
	}
	return st
}

// markRevoked sets Revoked on the generations whose intermediate has an
// intermediate revocation: one recorded for it, or for another record of
// the same certificate (revocations are keyed by serial; a different CA
// certificate of that serial is not this one).
func markRevoked(ctx context.Context, revs store.Revocations, gens []store.Generation, infos []GenerationInfo) error {
	der := make(map[uint64][]byte, len(gens))
	for _, g := range gens {
		der[g.ID] = g.CertDER
	}
	for i := range infos {
		g := &infos[i]
		if g.cert == nil || g.cert.SerialNumber.Sign() <= 0 {
			continue
		}
		rec, err := revs.GetRevocation(ctx, hex.EncodeToString(g.cert.SerialNumber.Bytes()))
		switch {
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
			continue
		case err != nil:
			return fmt.Errorf("read the revocation of generation %d: %w", g.ID, err)
		}
		if rec.Kind != store.KindIntermediate || (rec.Generation != g.ID && !bytes.Equal(der[rec.Generation], g.cert.Raw)) {
			continue
		}
		g.Revoked = &GenerationRevocation{Seq: rec.Seq, Reason: rec.Reason.String(), RevokedAt: rec.RevokedAt}
	}
	return nil
}

// StateName is g.State; for the answer of a server older than that field,
// the state its other fields give (such a server did not tell abandoned
// generations apart).
func (g GenerationInfo) StateName() string {
	switch {
	case g.State != "":
		return g.State
	case g.Active:
		return StateActive
	case g.ActivatedAt.IsZero():
		return StatePrepared
	}
	return StateRetired
}
