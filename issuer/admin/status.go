package admin

import (
	"context"
	"crypto/x509"
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
	// cert is the parsed certificate, for LiveStatus.
	cert *x509.Certificate
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
	}
	return st
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
