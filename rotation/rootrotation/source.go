package rootrotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"github.com/meshca/meshca/ca/root"
)

// Source is the root.Source that meshca mints under while a root rotation
// may run: it wraps the source of the roots in force (A) and, once a
// rotation is journaled, the new root's source (B), and follows the
// journaled phase:
//
//   - Roots: A's roots when idle; A's roots then B in phases 1 to 4 (A
//     first, so that root-cert.pem gets B's bytes appended); B alone from
//     phase 5 on.
//   - MintIntermediate, Kind, Capabilities, CurrentCRL, Health: A's before
//     the switch (phase 3), B's from it on. A minted intermediate's
//     Bundle.Roots are the roots of the phase, so that the chain's last
//     element and every published bundle carry them all; the root it
//     chains to is found among them (Bundle.Chain).
//
// Post-quantum anchors follow Roots: every root's ML-DSA or Catalyst key
// (2.5.29.72) among them is a trust anchor, so a Catalyst B is anchored
// from phase 1 on and A's anchor leaves with A.
type Source struct {
	old root.Source

	mu       sync.RWMutex
	phase    Phase
	oldRoots []*x509.Certificate
	newRoot  *x509.Certificate
	next     root.Source
	// runCtx is Run's context, so that a B set later runs too.
	runCtx      context.Context
	nextRunning bool
}

// NewSource wraps old, the configured root source (A). It refuses a
// source that cannot mint (a pre-issued intermediate): meshca rotates only
// a root it mints under.
func NewSource(old root.Source) (*Source, error) {
	if _, ok := old.(root.PreIssuedSource); ok || !old.Capabilities().Mint {
		return nil, errors.New("root rotation needs a root that meshca mints its intermediate under (root.file.rootCert and rootKey, or root.source vault); root.file.cacertsDir holds a pre-issued intermediate")
	}
	return &Source{old: old, phase: PhaseIdle}, nil
}

// RootSource is s as the root.Source to give the intermediate manager:
// when A is a root.RootKeyHolder (meshca holds the root key and signs the
// root's CRL) it is one too, for the root that mints in the current phase.
func (s *Source) RootSource() root.Source {
	if _, ok := s.old.(root.RootKeyHolder); ok {
		return keyHolder{s}
	}
	return s
}

// Old is A's source, as configured.
func (s *Source) Old() root.Source { return s.old }

// set moves s to phase p of a rotation from oldRoots to newRoot (whose
// source is next).
func (s *Source) set(p Phase, oldRoots []*x509.Certificate, newRoot *x509.Certificate, next root.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase, s.oldRoots, s.newRoot = p, oldRoots, newRoot
	if next != nil && next != s.next {
		s.next, s.nextRunning = next, false
	}
	if s.next != nil && s.runCtx != nil && !s.nextRunning {
		s.nextRunning = true
		go s.next.Run(s.runCtx)
	}
}

// hasNext reports whether s holds a new root's source (B).
func (s *Source) hasNext() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.next != nil
}

// setPhase moves s to phase p of the rotation it already follows.
func (s *Source) setPhase(p Phase) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// Phase is the phase s follows.
func (s *Source) Phase() Phase {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.phase
}

// minter is the source that mints in the current phase.
func (s *Source) minter() root.Source {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.next != nil && s.phase.underNew() {
		return s.next
	}
	return s.old
}

// roots are the roots of the current phase; nil when idle (A's own).
func (s *Source) roots() []*x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.newRoot == nil || s.phase == PhaseIdle:
		return nil
	case s.phase.bothRoots():
		out := append([]*x509.Certificate(nil), s.oldRoots...)
		for _, r := range s.oldRoots {
			if bytes.Equal(r.Raw, s.newRoot.Raw) {
				return out
			}
		}
		return append(out, s.newRoot)
	default:
		return []*x509.Certificate{s.newRoot}
	}
}

// Kind implements root.Source: the minting source's kind.
func (s *Source) Kind() string { return s.minter().Kind() }

// Capabilities implements root.Source: the minting source's.
func (s *Source) Capabilities() root.Capabilities { return s.minter().Capabilities() }

// Roots implements root.Source.
func (s *Source) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	if r := s.roots(); r != nil {
		// The minting source must still be able to serve.
		if err := s.minter().Health(); err != nil {
			return nil, err
		}
		return r, nil
	}
	return s.old.Roots(ctx)
}

// MintIntermediate implements root.Source: the minting source signs; the
// bundle carries the phase's roots.
func (s *Source) MintIntermediate(ctx context.Context, req root.IntermediateRequest) (*root.Bundle, error) {
	b, err := s.minter().MintIntermediate(ctx, req)
	if err != nil {
		return nil, err
	}
	if r := s.roots(); r != nil {
		out := *b
		out.Roots = r
		if len(out.Chain()) == len(b.Intermediates)+1 {
			return nil, fmt.Errorf("root rotation: the intermediate minted by the %s root source chains to none of the roots of phase %s", s.minter().Kind(), s.Phase())
		}
		return &out, nil
	}
	return b, nil
}

// CurrentCRL implements root.Source: the minting source's root CRL.
func (s *Source) CurrentCRL() *x509.RevocationList { return s.minter().CurrentCRL() }

// CurrentCRLs implements root.CRLSet: the minting source's root CRL and,
// while both roots are in force (phases 1 to 4), the other source's. A
// leaf under A issued before the switch stays in use until phase 5, and a
// relying party that checks every CA of its chain (Envoy with Istio's
// ca-crl.pem, OpenSSL's crl_check_all) refuses it without a CRL from A.
// Only sources that supply their root's CRL (Vault) give one: for a root
// whose key meshca holds, meshca signs the CRL itself. An entry whose
// source holds no CRL yet (A's Vault not reached since a restart) has a
// nil CRL, so that ca-crl.pem is not published without it.
func (s *Source) CurrentCRLs() []root.HeldCRL {
	s.mu.RLock()
	minter, other := s.old, root.Source(nil)
	var minterRoot, otherRoot *x509.Certificate
	if len(s.oldRoots) > 0 {
		minterRoot = s.oldRoots[0]
	}
	if s.next != nil {
		if s.phase.underNew() {
			minter, minterRoot = s.next, s.newRoot
		}
		if s.phase.bothRoots() {
			other = s.old
			if len(s.oldRoots) > 0 {
				otherRoot = s.oldRoots[0]
			}
			if minter == s.old {
				other, otherRoot = s.next, s.newRoot
			}
		}
	}
	s.mu.RUnlock()
	var out []root.HeldCRL
	if minter.Capabilities().RootCRL {
		out = append(out, root.HeldCRL{CRL: minter.CurrentCRL(), Minting: true, Root: minterRoot})
	}
	if other != nil && other.Capabilities().RootCRL {
		out = append(out, root.HeldCRL{CRL: other.CurrentCRL(), Root: otherRoot})
	}
	return out
}

// Health implements root.Source: the minting source's health.
func (s *Source) Health() error { return s.minter().Health() }

// OtherHealth is the health of the other root's source while both roots
// are in force (phases 1 to 4) and that source supplies its root's CRL (a
// Vault root): meshca publishes that CRL and refreshes it from there, so
// while the source fails the CRL ages towards its nextUpdate, and after a
// restart ca-crl.pem waits for it. nil otherwise.
func (s *Source) OtherHealth() error {
	s.mu.RLock()
	other := root.Source(nil)
	if s.next != nil && s.phase.bothRoots() {
		other = s.next
		if s.phase.underNew() {
			other = s.old
		}
	}
	s.mu.RUnlock()
	if other == nil || !other.Capabilities().RootCRL {
		return nil
	}
	return other.Health()
}

// Run implements root.Source: A's background work and, once there is a
// rotation, B's.
func (s *Source) Run(ctx context.Context) {
	s.mu.Lock()
	s.runCtx = ctx
	if s.next != nil && !s.nextRunning {
		s.nextRunning = true
		go s.next.Run(ctx)
	}
	s.mu.Unlock()
	s.old.Run(ctx)
}

// keyHolder is a Source over a root meshca holds the key of.
type keyHolder struct{ *Source }

// SigningRoot implements root.RootKeyHolder: the minting root's.
func (k keyHolder) SigningRoot() (*x509.Certificate, root.CAKey, error) {
	h, ok := k.minter().(root.RootKeyHolder)
	if !ok {
		return nil, root.CAKey{}, fmt.Errorf("root rotation: the %s root source of phase %s holds no root key", k.minter().Kind(), k.Phase())
	}
	return h.SigningRoot()
}

var (
	_ root.Source        = (*Source)(nil)
	_ root.RootKeyHolder = keyHolder{}
)
