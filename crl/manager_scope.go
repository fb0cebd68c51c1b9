package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// rebuild builds new full and delta CRLs of the scopes in which and
// publishes the result. base makes the new full CRLs the bases of later
// deltas (at start and at every scheduled republish).
func (m *Manager) rebuild(ctx context.Context, which map[string]bool, base bool) error {
	m.buildMu.Lock()
	defer m.buildMu.Unlock()
	return m.rebuildLocked(ctx, which, base)
}

// rebuildLocked is rebuild; the caller holds buildMu.
func (m *Manager) rebuildLocked(ctx context.Context, which map[string]bool, base bool) error {
	if len(which) == 0 {
		return nil
	}
	now, err := m.thisUpdate(ctx, which)
	if err != nil {
		return err
	}
	next := now.Add(m.opts.Validity)
	names := make([]string, 0, len(which))
	for n := range which {
		if m.scopes[n] != nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	// One scope's failure does not stop the others: they are built,
	// served and published; the failed one keeps its last CRL (if any),
	// stays dirty, and is retried by Run.
	var scopeErrs []error
	for _, n := range names {
		if err := m.rebuildScope(ctx, m.scopes[n], now, next, base); err != nil {
			m.metrics.buildErrors.WithLabelValues(n).Inc()
			m.log.Error("building a CRL failed; the other CRLs are served and this one is retried with backoff (meshca_crl_build_errors_total). "+
				"Check the CA generation's certificate and key (meshca status); a revocation record a CRL cannot carry is skipped and logged, not fatal",
				"scope", n, "error", err)
			scopeErrs = append(scopeErrs, fmt.Errorf("CRL %s: %w", n, err))
			m.mu.Lock()
			m.dirty[n] = true
			if m.pendingSince.IsZero() {
				m.pendingSince = m.clk.Now()
			}
			m.mu.Unlock()
		}
	}
	if len(scopeErrs) > 0 {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	if err := m.assemble(ctx); err != nil {
		return m.publishFailed(errors.Join(append(scopeErrs, err)...))
	}
	if len(scopeErrs) > 0 {
		return m.publishFailed(&scopeBuildError{errors.Join(scopeErrs...)})
	}
	return nil
}

// scopeBuildError is a rebuild that failed only in some scopes' CRLs:
// the rest was built and published.
type scopeBuildError struct{ err error }

func (e *scopeBuildError) Error() string { return e.err.Error() }
func (e *scopeBuildError) Unwrap() error { return e.err }

// thisUpdate is the thisUpdate of a rebuild of the scopes in which: now,
// to the second (CRL times are encoded to the second, RFC 5280 section
// 5.1.2.4), and after the thisUpdate of every scope's current CRL: a
// relying party takes the CRL with the later thisUpdate (or number) as
// the newer, so a new CRL must not keep the old one's second. A rebuild
// within the second of the last one therefore
// waits for the next second (at most 1 s) rather than dating the CRL
// ahead of the clock: a relying party refuses a CRL whose thisUpdate is
// in the future (OpenSSL's X509_V_ERR_CRL_NOT_YET_VALID), and a burst of
// rebuilds would push it ever further ahead. A clock stepped back more
// than that is not waited for. Caller holds buildMu.
func (m *Manager) thisUpdate(ctx context.Context, which map[string]bool) (time.Time, error) {
	var last time.Time
	for n := range which {
		if sc := m.scopes[n]; sc != nil && sc.full != nil && sc.full.ThisUpdate.After(last) {
			last = sc.full.ThisUpdate
		}
	}
	now := m.clk.Now().UTC()
	if !last.IsZero() && now.Truncate(time.Second).Compare(last) <= 0 {
		at := last.Add(time.Second)
		if at.Sub(now) > time.Second {
			// The clock was stepped back (NTP, a restored VM): waiting
			// for it would hold every revocation back for as long as the
			// step, and dating ahead of it would make the CRL not yet
			// valid. The clock wins; the CRL numbers still grow.
			m.log.Warn("the clock is behind the last CRL's thisUpdate (it was stepped back); dating the new CRLs by the clock", "last_this_update", last, "now", now)
			return now.Truncate(time.Second), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-m.clk.After(at.Sub(now)):
		}
		if n := m.clk.Now().UTC().Truncate(time.Second); n.After(at) {
			at = n
		}
		return at, nil
	}
	return now.Truncate(time.Second), nil
}

func (m *Manager) publishFailed(err error) error {
	m.metrics.publishErrors.Inc()
	return err
}

// rebuildScope builds sc's full CRL and its delta. Caller holds buildMu.
// Both get one number: a complete and a delta CRL issued at the same time
// MUST have the same CRL number (RFC 5280 section 5.2.3). The store's
// sequence never repeats nor goes back, across restarts too. Both list
// the revocations up to the cut the store gives with the number, not
// whatever is committed by the time they are listed: with replicas on a
// shared store, a number allocated here before another replica's, but
// listed after a revocation that replica's CRL missed, would otherwise
// list more than the CRL with the greater number, which a relying party
// takes for the newer one.
func (m *Manager) rebuildScope(ctx context.Context, sc *scope, now, next time.Time, base bool) error {
	name := sc.issuer.Scope
	if IsRootScope(name) {
		gens, err := m.generationsOf(ctx, sc.issuer.Cert)
		if err != nil {
			return err
		}
		sc.gens = gens
	}
	cut, err := m.opts.Store.NextCRLNumber(ctx, numberScope(name))
	if err != nil {
		return fmt.Errorf("allocate a CRL number: %w", err)
	}
	fullNum, deltaNum := cut.Number, cut.Number
	p := Params{Issuer: sc.issuer.Cert, Number: fullNum, ThisUpdate: now, NextUpdate: next}
	if m.opts.URL != "" {
		p.FreshestCRL = []string{m.opts.URL + "/" + name + "-delta.crl"}
	}
	start := m.clk.Now()
	var count int
	der, err := Build(p, m.entries(ctx, sc, now, 0, cut.Seq, &count), sc.issuer.Signer)
	if err != nil {
		return err
	}
	m.metrics.buildSeconds.Observe(m.clk.Since(start).Seconds())
	full := &Published{Scope: name, Number: fullNum, DER: der, ThisUpdate: now, NextUpdate: next}
	m.metrics.observe(name, kindFull, full, count)
	if base || sc.baseNumber == 0 {
		sc.baseNumber, sc.baseSeq = fullNum, cut.Seq
	}
	dp := Params{Issuer: sc.issuer.Cert, Number: deltaNum, ThisUpdate: now, NextUpdate: next, BaseNumber: sc.baseNumber}
	start = m.clk.Now()
	count = 0
	dder, err := Build(dp, m.entries(ctx, sc, now, sc.baseSeq, cut.Seq, &count), sc.issuer.Signer)
	if err != nil {
		return fmt.Errorf("delta: %w", err)
	}
	m.metrics.buildSeconds.Observe(m.clk.Since(start).Seconds())
	delta := &Published{Scope: name, Delta: true, Number: deltaNum, DER: dder, ThisUpdate: now, NextUpdate: next}
	m.metrics.observe(name, kindDelta, delta, count)
	sc.full, sc.delta = full, delta
	return nil
}

// entries streams the revocations sc's CRL lists, with Seq above since
// and up to upto (the CRL's cut): leaves of its generation, or for a root
// the revoked intermediates it issued. An
// entry is dropped only once its certificate expired more than one CRL
// period ago (RFC 5280 section 3.3 allows removal after expiry; the extra
// period lets every relying party see it on a CRL issued after expiry).
// An entry without a known expiry is never dropped.
func (m *Manager) entries(ctx context.Context, sc *scope, now time.Time, since, upto uint64, count *int) Entries {
	keepAfter := now.Add(-m.opts.Validity)
	return func(yield func(Entry) bool) error {
		return m.opts.Store.ListRevocations(ctx, since, func(r store.Revocation) bool {
			if r.Seq > upto {
				return false // listed in Seq order: the rest is after the cut
			}
			if !sc.lists(r) || (!r.NotAfter.IsZero() && r.NotAfter.Before(keepAfter)) {
				return true
			}
			e, ok := m.encodableEntry(sc, r, since == 0)
			if !ok {
				return true
			}
			*count++
			return yield(e)
		})
	}
}

// encodableEntry is r's CRL entry. The store refuses records a CRL cannot
// carry, but one written by an older build may hold them. Such a record
// does not fail the CRL: a CRL that never rebuilds again (every later
// revocation of the scope unpublished) is worse than one entry that is
// not as recorded. The revocation itself is kept whenever it can be: a
// bad invalidityDate or reason is left off (the entry still revokes the
// certificate, RFC 5280 sections 5.3.1 and 5.3.2 make both optional); only
// a serial or revocationDate no CRL can carry drops the entry. Each is
// logged (at error level: an operator must repair or re-revoke it) and
// counted, once per full CRL (report).
func (m *Manager) encodableEntry(sc *scope, r store.Revocation, report bool) (Entry, bool) {
	bad := func(what string, dropped bool) {
		if !report {
			return
		}
		m.metrics.unencodable.WithLabelValues(sc.issuer.Scope).Inc()
		m.log.Error("a stored revocation record cannot be encoded on a CRL as recorded (written by an older meshca?); "+
			"the CRL is built without it; check the certificate with 'meshca revocations list' and revoke it again if it is dropped",
			"scope", sc.issuer.Scope, "seq", r.Seq, "serial", identity.Quote(r.Serial), "field", what, "entry_dropped", dropped)
	}
	b, err := SerialBytes(r.Serial)
	if err != nil || (len(b) == 1 && b[0] == 0) {
		bad("serial", true)
		return Entry{}, false
	}
	if !store.TimeEncodable(r.RevokedAt) {
		bad("revocationDate", true)
		return Entry{}, false
	}
	e := Entry{Serial: b, RevokedAt: r.RevokedAt, Reason: r.Reason, InvalidityDate: r.InvalidityDate}
	if !e.InvalidityDate.IsZero() && !store.TimeEncodable(e.InvalidityDate) {
		bad("invalidityDate", false)
		e.InvalidityDate = time.Time{}
	}
	if !validReason(e.Reason) {
		bad("reasonCode", false)
		e.Reason = store.ReasonUnspecified
	}
	return e, true
}

// lists reports whether r belongs on sc's CRL: a leaf of its generation,
// or for a root an intermediate it issued (RFC 5280 section 5).
func (sc *scope) lists(r store.Revocation) bool {
	if IsRootScope(sc.issuer.Scope) {
		return r.Kind == store.KindIntermediate && sc.gens != nil && sc.gens.lists(r.Generation)
	}
	return r.Kind == store.KindLeaf && r.Generation == sc.issuer.Generation
}

// assemble updates what is served and publishes ca-crl.pem: the full CRL
// of every issuer in order, then the external root CRL. Caller holds
// buildMu.
func (m *Manager) assemble(ctx context.Context) error {
	var list []Published
	var caCRL bytes.Buffer
	// The issuers of the CRLs assembled: a CRL meshca built names its
	// issuer certificate's subject and key identifier (Build writes them),
	// so they are taken from the certificate; parsing a large CRL only to
	// read them back would cost about 1 KiB per entry on every rebuild.
	var crls []crlIssuer
	for _, is := range m.opts.Issuers {
		sc := m.scopes[is.Scope]
		if sc.full == nil {
			continue
		}
		list = append(list, *sc.full, *sc.delta)
		_ = pem.Encode(&caCRL, &pem.Block{Type: pemTypeCRL, Bytes: sc.full.DER})
		crls = append(crls, crlIssuer{name: is.Cert.RawSubject, aki: is.Cert.SubjectKeyId})
	}
	exts, extMissing := m.externalCRLs()
	extScopes := make(map[string]bool, len(exts))
	for _, ext := range exts {
		p := Published{Scope: ext.scope, DER: ext.crl.Raw, ThisUpdate: ext.crl.ThisUpdate, NextUpdate: ext.crl.NextUpdate}
		if ext.crl.Number != nil && ext.crl.Number.IsUint64() {
			p.Number = ext.crl.Number.Uint64()
		}
		list = append(list, p)
		_ = pem.Encode(&caCRL, &pem.Block{Type: pemTypeCRL, Bytes: ext.crl.Raw})
		crls = append(crls, crlIssuer{name: ext.crl.RawIssuer, aki: ext.crl.AuthorityKeyId})
		m.metrics.observe(ext.scope, kindFull, &p, len(ext.crl.RevokedCertificateEntries))
		extScopes[ext.scope] = true
	}
	for s := range m.extScopes {
		if !extScopes[s] {
			m.metrics.forget(s) // the root of a finished rotation
		}
	}
	m.extScopes = extScopes
	pemBytes := caCRL.Bytes()
	// The distribution point serves the new CRLs at once; ca-crl.pem once
	// it is handed to the trust distribution.
	m.served.Store(newServedSet(list, m.lastGood))
	var perr error
	switch missing := append(missingCRLs(m.opts.Chain, crls), extMissing...); {
	case len(missing) > 0:
		// Not an error of the rebuild: the CRLs are served over HTTP all the
		// same, and the missing one (an external root CRL) may come later.
		m.metrics.incomplete.Set(1)
		m.log.Error("ca-crl.pem is not published: Istio refuses a ca-crl.pem without a CRL from every certificate in cert-chain.pem, and there is none from some; "+
			"with root.file.cacertsDir set crl.rootCRL.file or crl.rootCRL.url to the root's CRL, with Vault check that the mount serves its CRL (<mount>/crl/pem)",
			"missing", missing)
	case len(pemBytes) > m.opts.MaxPublishBytes:
		// The size first: whoever sees the gauge at 1 reads it.
		m.oversize.Store(int64(len(pemBytes)))
		m.metrics.incomplete.Set(0)
		m.metrics.oversize.Set(1)
		m.log.Error("ca-crl.pem is too large for the istio-ca-crl ConfigMap; publishing keeps the last good one. "+
			"Revoking many leaves one by one makes the CRL grow: rotate the intermediate and revoke its whole generation instead (one entry on the root CRL), "+
			"or wait until the revoked certificates expire and their entries age out",
			"bytes", len(pemBytes), "limit", m.opts.MaxPublishBytes)
	default:
		m.oversize.Store(0)
		m.metrics.incomplete.Set(0)
		m.metrics.oversize.Set(0)
		if !bytes.Equal(pemBytes, m.lastGood) && m.opts.Publish != nil {
			if err := m.opts.Publish(ctx, pemBytes); err != nil {
				perr = fmt.Errorf("publish ca-crl.pem: %w", err)
				break
			}
		}
		m.lastGood = bytes.Clone(pemBytes)
	}
	m.served.Store(newServedSet(list, m.lastGood))
	// The external CRLs count as followed unless handing them over
	// failed: followExternal then tries again at its next poll.
	if perr == nil {
		m.extRaw = externalKey(exts, extMissing)
	}
	return perr
}

// extCRL is a root CRL meshca publishes but does not build, and the
// scope it is served as.
type extCRL struct {
	scope string
	crl   *x509.RevocationList
}

// externalCRLs are the root CRLs taken from Options.External: one, or
// during a root rotation between sources that supply them (root.CRLSet)
// the CRL of each root in force. The minting root's is ScopeRootExternal;
// the other's is ExternalScope of it. missing names the roots in force
// other than the minting one whose CRL is not held yet: ca-crl.pem is not
// complete without them, though cert-chain.pem (which missingCRLs checks)
// does not hold them, since certificates still in use chain to them.
func (m *Manager) externalCRLs() (exts []extCRL, missing []string) {
	if m.opts.External == nil {
		return nil, nil
	}
	if set, ok := m.opts.External.(root.CRLSet); ok {
		for _, h := range set.CurrentCRLs() {
			switch {
			case h.CRL != nil && h.Minting:
				exts = append(exts, extCRL{scope: ScopeRootExternal, crl: h.CRL})
			case h.CRL != nil:
				exts = append(exts, extCRL{scope: ExternalScope(h.CRL), crl: h.CRL})
			case !h.Minting:
				name := "the other root in force (its source has not answered)"
				if h.Root != nil {
					name = h.Root.Subject.String()
				}
				missing = append(missing, name)
			}
		}
		return exts, missing
	}
	if c := m.opts.External.CurrentCRL(); c != nil {
		return []extCRL{{scope: ScopeRootExternal, crl: c}}, nil
	}
	return nil, nil
}

// externalKey identifies what externalCRLs returned: each CRL's scope and
// DER, and the roots whose CRL is missing.
func externalKey(exts []extCRL, missing []string) []byte {
	var b []byte
	for _, e := range exts {
		b = append(b, e.scope...)
		b = append(b, 0)
		b = append(b, e.crl.Raw...)
	}
	for _, n := range missing {
		b = append(b, 1)
		b = append(b, n...)
	}
	return b
}

// followExternal republishes when the external root CRLs changed.
func (m *Manager) followExternal(ctx context.Context) error {
	exts, missing := m.externalCRLs()
	m.buildMu.Lock()
	defer m.buildMu.Unlock()
	if bytes.Equal(externalKey(exts, missing), m.extRaw) {
		return nil
	}
	if err := m.assemble(ctx); err != nil {
		return m.publishFailed(err)
	}
	return nil
}

// missingCRLs names the certificates of chain that no CRL of crls was
// issued by: the CRL's issuer is the certificate's subject and, when both
// are present, its AuthorityKeyIdentifier is the certificate's
// SubjectKeyIdentifier (RFC 5280 sections 5.1.2.3 and 5.2.1). Signatures
// were checked where the CRLs came from.
func missingCRLs(chain []*x509.Certificate, crls []crlIssuer) []string {
	var missing []string
	for _, c := range chain {
		found := false
		for _, l := range crls {
			if bytes.Equal(l.name, c.RawSubject) &&
				(len(l.aki) == 0 || len(c.SubjectKeyId) == 0 || bytes.Equal(l.aki, c.SubjectKeyId)) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, c.Subject.String())
		}
	}
	return missing
}

// crlIssuer is what missingCRLs needs of a CRL: its issuer name (DER)
// and authorityKeyIdentifier.
type crlIssuer struct{ name, aki []byte }

const pemTypeCRL = "X509 CRL"
