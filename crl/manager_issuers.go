package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// checkIssuers refuses an issuer list NewManager or SetIssuers cannot use.
func checkIssuers(issuers []Issuer) error {
	seen := map[string]bool{}
	for _, is := range issuers {
		if is.Cert == nil || is.Signer.Key == nil {
			return fmt.Errorf("crl: issuer %s has no certificate or key", is.Scope)
		}
		if seen[is.Scope] {
			return fmt.Errorf("crl: issuer scope %s is given twice", is.Scope)
		}
		seen[is.Scope] = true
	}
	return nil
}

// SetIssuers makes issuers the CAs whose CRLs meshca builds and chain the
// new cert-chain.pem, at run time: after an intermediate rotation (a new
// active generation; the retired ones whose leaves may still be in use
// are retained), when a retained generation leaves its grace period, or
// when the root changes. It builds the CRLs of the issuers it did not
// have (or whose certificate changed: a new root keeps the scope and its
// CRL numbers, which never go back, RFC 5280 section 5.2.3), keeps
// serving the CRLs of those it keeps unchanged, stops serving (and
// reporting) those no longer listed, and republishes ca-crl.pem, which
// Istio takes only with a CRL from every certificate of cert-chain.pem.
// Revocations in a kept generation go on rebuilding its CRL; a
// revocation in a dropped one is still recorded, on no CRL.
//
// Bad issuers (none, a missing key, a scope given twice) change nothing.
// A failure to build a new CRL leaves that scope to Run's retries and is
// returned, as is a failure to publish; the issuers are switched in both
// cases.
func (m *Manager) SetIssuers(ctx context.Context, issuers []Issuer, chain []*x509.Certificate) error {
	if len(issuers) == 0 {
		return errors.New("crl: SetIssuers without issuers")
	}
	if err := checkIssuers(issuers); err != nil {
		return err
	}
	m.buildMu.Lock()
	defer m.buildMu.Unlock()
	scopes := make(map[string]*scope, len(issuers))
	build := map[string]bool{}
	for _, is := range issuers {
		if sc := m.scopes[is.Scope]; sc != nil && bytes.Equal(sc.issuer.Cert.Raw, is.Cert.Raw) {
			sc.issuer = is
			scopes[is.Scope] = sc
			continue
		}
		// A scope that is new, or whose issuer changed: its CRL so far is
		// not the new issuer's, so it is neither served nor published as
		// the scope's (ca-crl.pem would claim a CRL from the new issuer it
		// lacks) until the new issuer's is built; the delta base starts
		// afresh. Its numbers go on from the store's sequence.
		scopes[is.Scope] = &scope{issuer: is}
		build[is.Scope] = true
		m.metrics.buildErrors.WithLabelValues(is.Scope)
		m.metrics.unencodable.WithLabelValues(is.Scope)
	}
	var dropped []string
	m.mu.Lock()
	for name := range m.scopes {
		if scopes[name] == nil {
			dropped = append(dropped, name)
			delete(m.dirty, name)
		}
	}
	m.scopes = scopes
	m.opts.Issuers = append([]Issuer(nil), issuers...)
	m.opts.Chain = append([]*x509.Certificate(nil), chain...)
	m.mu.Unlock()
	for _, name := range dropped {
		m.metrics.forget(name)
	}
	if len(build) > 0 {
		err := m.rebuildLocked(ctx, build, true)
		m.log.InfoContext(ctx, "CRL issuers changed", "built", keys(build), "dropped", dropped, "error", err)
		return err
	}
	m.log.InfoContext(ctx, "CRL issuers changed", "dropped", dropped)
	if err := m.assemble(ctx); err != nil {
		return m.publishFailed(err)
	}
	return nil
}

func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}

// MissingCRLs names the certificates of chain (cert-chain.pem) that no CRL
// in caCRL (PEM "X509 CRL" blocks, a ca-crl.pem) was issued by. Istio
// refuses a ca-crl.pem that lacks one, so a cacerts Secret must not get a
// new cert-chain.pem before its ca-crl.pem covers it.
func MissingCRLs(chain []*x509.Certificate, caCRL []byte) ([]string, error) {
	var crls []crlIssuer
	for rest := caCRL; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemTypeCRL {
			continue
		}
		l, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca-crl.pem: %w", err)
		}
		crls = append(crls, crlIssuer{name: l.RawIssuer, aki: l.AuthorityKeyId})
	}
	return missingCRLs(chain, crls), nil
}
