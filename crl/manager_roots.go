package crl

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/meshca/meshca/ca/root"
)

// rootScopePrefix starts the scope of a root's CRL other than the minting
// root's (ScopeRoot).
const rootScopePrefix = ScopeRoot + "-"

// RootScope is the scope of the CRL of a root whose key meshca holds:
// ScopeRoot for the root new intermediates are minted under (its CRL is
// the one for the root of cert-chain.pem, <crl.url>/root.crl), and
// "root-" and the first 16 hex digits of the SHA-256 of its certificate for
// another root in force (during a root rotation, the other of the old and
// the new root). Every root scope draws its CRL numbers from ScopeRoot's
// sequence, so a root's CRLNumber keeps increasing when its scope changes
// at the switch (RFC 5280 section 5.2.3).
func RootScope(cert *x509.Certificate, minting bool) string {
	if minting {
		return ScopeRoot
	}
	sum := sha256.Sum256(cert.Raw)
	return rootScopePrefix + hex.EncodeToString(sum[:8])
}

// RootIssuers are the CRL issuers of the roots held (root.HeldRoots), in
// their order.
func RootIssuers(held []root.HeldRoot) []Issuer {
	out := make([]Issuer, 0, len(held))
	for _, h := range held {
		out = append(out, Issuer{Scope: RootScope(h.Cert, h.Minting), Cert: h.Cert, Signer: Signer{Key: h.Key.Signer, Alt: h.Key.Alt}})
	}
	return out
}

// IsRootScope reports whether scope is the CRL of a root meshca holds the
// key of (RootScope).
func IsRootScope(scope string) bool {
	return scope == ScopeRoot || (strings.HasPrefix(scope, rootScopePrefix) && !IsExternalScope(scope))
}

// ExternalScope is the scope of the CRL of a root in force that neither
// mints nor has its key held by meshca (the other root of a rotation
// between Vault roots): "root-external-" and the first 16 hex digits of
// the SHA-256 of the CRL's issuer name and authority key identifier, so
// that two roots of one name are told apart by their keys.
func ExternalScope(c *x509.RevocationList) string {
	h := sha256.New()
	h.Write(c.RawIssuer)
	h.Write(c.AuthorityKeyId)
	return ScopeRootExternal + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// IsExternalScope reports whether scope is a root CRL meshca takes from
// elsewhere (ScopeRootExternal or ExternalScope).
func IsExternalScope(scope string) bool {
	return scope == ScopeRootExternal || strings.HasPrefix(scope, ScopeRootExternal+"-")
}

// numberScope is the store sequence scope's CRL numbers come from.
func numberScope(scope string) string {
	if IsRootScope(scope) {
		return ScopeRoot
	}
	return scope
}

// rootGens says which generations a root scope's CRL lists the
// revocations of.
type rootGens struct {
	// issued are the generations whose intermediate the root issued.
	issued map[uint64]bool
	// known are the generations in the store; the revocation of an
	// unknown one goes on every root's CRL (its issuer cannot be told).
	known map[uint64]bool
}

func (g *rootGens) lists(gen uint64) bool { return g.issued[gen] || !g.known[gen] }

// generationsOf finds the generations whose intermediate rc issued: a CRL
// lists only certificates its issuer issued (RFC 5280 section 5), so
// during a root rotation the revocation of an intermediate under the old
// root goes on the old root's CRL, not the new one's. The certificates
// are parsed once (m.genCerts). Caller holds buildMu.
func (m *Manager) generationsOf(ctx context.Context, rc *x509.Certificate) (*rootGens, error) {
	gens, err := m.opts.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the CA generations: %w", err)
	}
	out := &rootGens{issued: map[uint64]bool{}, known: map[uint64]bool{}}
	for _, g := range gens {
		c := m.genCerts[g.ID]
		if c == nil {
			if c, err = x509.ParseCertificate(g.CertDER); err != nil {
				continue // unknown: listed on every root's CRL
			}
			m.genCerts[g.ID] = c
		}
		out.known[g.ID] = true
		if root.IssuedBy(c, rc) {
			out.issued[g.ID] = true
		}
	}
	return out, nil
}

// rootScopesLocked are the root scopes meshca builds. Caller holds mu.
func (m *Manager) rootScopesLocked() []string {
	var out []string
	for name := range m.scopes {
		if IsRootScope(name) {
			out = append(out, name)
		}
	}
	return out
}
