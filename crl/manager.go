package crl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// CRL scopes: one per CRL issuer.
const (
	// ScopeRoot is the root's CRL, built by meshca when it holds the root key.
	ScopeRoot = store.ScopeRoot
	// ScopeRootExternal is the root's CRL taken from Vault, a file or a URL.
	ScopeRootExternal = store.ScopeRootExternal
)

// ScopeGeneration is the scope of the CRL of meshca's CA generation id.
func ScopeGeneration(id uint64) string { return store.GenerationScope(id) }

// Issuer is one CA whose CRL meshca builds and signs.
type Issuer struct {
	// Scope is ScopeGeneration(Generation), or RootScope of a root (see
	// RootIssuers): a root's CRL lists the revoked intermediates it issued.
	Scope string
	// Generation is the CA generation of a generation scope; 0 for a root.
	Generation uint64
	Cert       *x509.Certificate
	Signer     Signer
}

// RootCRLSource supplies the root's CRL when meshca does not hold the root
// key: Vault's (ca/root/vault.Source), a file or a URL (NewRootCRLSource).
type RootCRLSource interface {
	// CurrentCRL returns the last good CRL, nil while none is held.
	CurrentCRL() *x509.RevocationList
}

// Published is one CRL meshca serves.
type Published struct {
	Scope                  string
	Delta                  bool
	Number                 uint64
	DER                    []byte
	ThisUpdate, NextUpdate time.Time
}

// Options configure a Manager.
type Options struct {
	Store Backend
	// Issuers are the CAs whose CRLs meshca builds: each unexpired
	// generation still published, and the root when meshca holds its key.
	// ca-crl.pem holds their CRLs in this order, then the external root's.
	Issuers []Issuer
	// Chain is cert-chain.pem: ca-crl.pem is published only when it holds
	// a CRL from every certificate of it, as Istio requires.
	Chain []*x509.Certificate
	// External is the root's CRL when meshca does not build it; nil
	// otherwise. When it is a root.CRLSet (a root rotation), the CRL of
	// every root in force that it holds is published.
	External RootCRLSource
	// Validity is nextUpdate - thisUpdate (RFC 5280 section 5.1.2.5).
	Validity time.Duration
	// Republish is the interval of scheduled rebuilds (default Validity/2).
	Republish time.Duration
	// Coalesce gathers the revocations within it into one rebuild.
	Coalesce time.Duration
	// URL is the distribution point's base URL ("" for none): full CRLs
	// then carry FreshestCRL <URL>/<scope>-delta.crl.
	URL string
	// Publish hands the new ca-crl.pem (PEM "X509 CRL" blocks of every CA
	// in the chain) to the trust distribution; nil publishes nowhere.
	Publish func(ctx context.Context, caCRL []byte) error
	// MaxPublishBytes bounds ca-crl.pem (default MaxCACRLBytes); a larger
	// one is not published and the last good one stays.
	MaxPublishBytes int
	// Running reports whether a signer lineage other than the default one
	// runs (config.SeparateLineages): the active generation of one that
	// does not (a signer or a plug-in cluster removed from the
	// configuration) signs nothing, and may be revoked. nil: every lineage
	// runs, and no active generation may be revoked.
	Running    func(lineage string) bool
	Clock      clock.WithTicker
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// MaxCACRLBytes is the largest ca-crl.pem meshca publishes: a ConfigMap
// holds at most 1 MiB of data (Kubernetes validation); 16 KiB are left for
// the key name and the Secret's other keys.
const MaxCACRLBytes = 1<<20 - 16<<10

// externalPoll is how often the external root CRL source is looked at
// (an atomic load; the source refreshes itself).
const externalPoll = 5 * time.Second

// Manager is the running revocation service: it records revocations,
// answers IsRevoked from memory, and builds, serves and publishes the CRLs.
type Manager struct {
	opts    Options
	revoker *Revoker
	clk     clock.WithTicker
	log     *slog.Logger
	metrics *metrics

	// mu guards revoked, revokedGens, dirty and scopes' contents.
	mu      sync.Mutex
	revoked map[string]uint64 // serial magnitude (raw bytes) -> Seq
	// followSeq is the highest Seq Follow (or loadRevoked) has read:
	// every record up to it is in revoked and scheduled.
	followSeq uint64
	// loaded is set once loadRevoked has run (Start).
	loaded      bool
	revokedGens map[uint64]bool
	dirty       map[string]bool
	// pendingSince is when the first revocation not yet rebuilt was
	// acknowledged: the coalescing window runs from it.
	pendingSince time.Time
	scopes       map[string]*scope
	// buildMu serialises rebuilds (a scheduled republish and a coalesced one).
	buildMu sync.Mutex
	// genCerts are the generations' certificates, parsed once (guarded by
	// buildMu), to tell which root issued each (generationsOf).
	genCerts map[uint64]*x509.Certificate

	served   atomic.Pointer[servedSet]
	lastGood []byte // the last ca-crl.pem published (guarded by buildMu)
	extRaw   []byte // the external CRLs last published (externalKey; guarded by buildMu)
	// extScopes are the scopes of the external CRLs last assembled
	// (guarded by buildMu).
	extScopes map[string]bool
	kick      chan struct{}
	// oversize is the size of the last ca-crl.pem refused for its size; 0
	// once one is published.
	oversize  atomic.Int64
	started   atomic.Bool
	runCalled atomic.Bool
}

// scope is the state of one issuer's CRLs.
type scope struct {
	issuer Issuer
	full   *Published
	delta  *Published
	// gens, for a root scope, are the generations whose revocations its
	// CRL lists (set by each rebuild).
	gens *rootGens
	// baseNumber and baseSeq are the base full CRL's number and the last
	// revocation Seq it covers: deltas list what came after (RFC 5280
	// section 5.2.4).
	baseNumber, baseSeq uint64
}

// NewManager prepares a Manager; Start builds the first CRLs.
func NewManager(o Options) (*Manager, error) {
	if o.Store == nil {
		return nil, errors.New("crl: Options.Store is required")
	}
	if o.Validity <= 0 {
		return nil, errors.New("crl: Options.Validity must be positive")
	}
	if o.Republish <= 0 || o.Republish >= o.Validity {
		o.Republish = o.Validity / 2
	}
	if o.MaxPublishBytes <= 0 {
		o.MaxPublishBytes = MaxCACRLBytes
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m := &Manager{
		opts: o, clk: o.Clock, log: o.Log.With("component", "crl"),
		revoker: &Revoker{st: o.Store, clk: o.Clock, running: o.Running},
		metrics: newMetrics(o.Registerer),
		revoked: map[string]uint64{}, revokedGens: map[uint64]bool{},
		dirty: map[string]bool{}, scopes: map[string]*scope{}, genCerts: map[uint64]*x509.Certificate{},
		kick: make(chan struct{}, 1),
	}
	if err := checkIssuers(o.Issuers); err != nil {
		return nil, err
	}
	for _, is := range o.Issuers {
		m.scopes[is.Scope] = &scope{issuer: is}
		m.metrics.buildErrors.WithLabelValues(is.Scope)
		m.metrics.unencodable.WithLabelValues(is.Scope)
	}
	m.served.Store(&servedSet{byName: map[string]*servedFile{}})
	return m, nil
}

// Start loads the revoked set and rebuilds and publishes every CRL, which
// also repairs a crash between a revocation's commit and its publication.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.loadRevoked(ctx); err != nil {
		return err
	}
	// A scope whose CRL does not build does not keep serve from starting:
	// the others are served, and Run retries it (rebuild left it dirty).
	if err := m.rebuild(ctx, m.allScopes(), true); err != nil && !errors.As(err, new(*scopeBuildError)) {
		return err
	}
	m.started.Store(true)
	var built []string
	for _, p := range m.CRLs() {
		if !p.Delta {
			built = append(built, fmt.Sprintf("%s#%d", p.Scope, p.Number))
		}
	}
	m.mu.Lock()
	revoked := len(m.revoked)
	m.mu.Unlock()
	m.log.InfoContext(ctx, "CRLs built", "crls", built, "revoked_serials", revoked, "ca_crl_pem_bytes", len(m.CACRLPEM()))
	return nil
}

// Revoke records req durably (Revoker.Revoke), adds it to the in-memory
// revoked set and schedules a coalesced rebuild of the affected CRLs. The
// revocation is acknowledged (returned) before the CRLs are rebuilt: a
// crash in between is repaired by the next Start.
func (m *Manager) Revoke(ctx context.Context, req Request) ([]store.Revocation, error) {
	recs, err := m.revoker.Revoke(ctx, req)
	if err != nil {
		return nil, err
	}
	m.schedule(recs, true)
	m.noteTwins(ctx, recs)
	for _, r := range m.Unlisted(ctx, recs) {
		m.log.WarnContext(ctx, "revocation recorded that no CRL meshca publishes lists", "serial", r.Serial, "kind", r.Kind, "generation", r.Generation,
			"notice", UnlistedNotice(r, m.clk.Now()))
	}
	return recs, nil
}

// Unlisted returns the records of recs that no CRL meshca signs will list
// (RFC 5280 section 5: a CRL lists what its issuer issued): an
// intermediate that no root meshca holds the key of issued (a Vault root,
// a pre-issued intermediate from root.file.cacertsDir, the other root of a
// rotation between Vault and a file root), or a certificate of a
// generation whose CRL meshca no longer serves. An intermediate whose
// generation cannot be read counts as listed wherever meshca signs a
// root's CRL, as the rebuild lists it there.
func (m *Manager) Unlisted(ctx context.Context, recs []store.Revocation) []store.Revocation {
	m.mu.Lock()
	var roots []*x509.Certificate
	for _, n := range m.rootScopesLocked() {
		roots = append(roots, m.scopes[n].issuer.Cert)
	}
	var out, inters []store.Revocation
	for _, r := range recs {
		switch {
		case r.Kind == store.KindIntermediate:
			inters = append(inters, r)
		case m.scopes[ScopeGeneration(r.Generation)] == nil:
			out = append(out, r)
		}
	}
	m.mu.Unlock()
	if len(inters) == 0 {
		return out
	}
	certs := map[uint64]*x509.Certificate{}
	if len(roots) > 0 {
		gens, err := m.opts.Store.ListGenerations(ctx)
		if err != nil {
			m.log.WarnContext(ctx, "cannot tell whether a root's CRL lists the revoked intermediates", "error", err)
			return out
		}
		for _, g := range gens {
			if c, err := x509.ParseCertificate(g.CertDER); err == nil {
				certs[g.ID] = c
			}
		}
	}
	for _, r := range inters {
		c, known := certs[r.Generation]
		listed := len(roots) > 0 && !known
		for _, rc := range roots {
			listed = listed || (known && root.IssuedBy(c, rc))
		}
		if !listed {
			out = append(out, r)
		}
	}
	return out
}

// UnlistedNotices are the UnlistedNotice of each of recs that is Unlisted.
func (m *Manager) UnlistedNotices(ctx context.Context, recs []store.Revocation) []string {
	var out []string
	for _, r := range m.Unlisted(ctx, recs) {
		out = append(out, UnlistedNotice(r, m.clk.Now()))
	}
	return out
}

// UnlistedNotice tells the operator what an Unlisted record means at now
// and what to do about it.
func UnlistedNotice(r store.Revocation, now time.Time) string {
	if r.Kind == store.KindIntermediate {
		return fmt.Sprintf("generation %d's intermediate (serial %s) is revoked in meshca's records, and meshca refuses certificates it issued where it checks revocation, "+
			"but no CRL meshca publishes lists it: no root whose CRL meshca signs issued it. Revoke it at the root that did "+
			"(with Vault: vault write <mount>/revoke serial_number=<serial with colons>; a pre-issued intermediate from root.file.cacertsDir: at the CA that issued it, "+
			"and set crl.rootCRL to that CA's CRL so that meshca publishes it)",
			r.Generation, r.Serial)
	}
	if !r.NotAfter.IsZero() && !now.Before(r.NotAfter) {
		return fmt.Sprintf("certificate %s is revoked in meshca's records; no CRL meshca publishes lists it, as meshca no longer serves its generation %d's CRL, and it has expired",
			r.Serial, r.Generation)
	}
	return fmt.Sprintf("certificate %s is revoked in meshca's records, and meshca refuses it where it checks revocation, but no CRL meshca publishes lists it: "+
		"meshca no longer serves its generation %d's CRL, so relying parties that read CRLs still accept it until it expires", r.Serial, r.Generation)
}

// CRLs returns every CRL currently served, full and delta, the external
// root's included.
func (m *Manager) CRLs() []Published {
	return m.served.Load().list
}

// CACRLPEM is the ca-crl.pem last published (nil before the first one).
func (m *Manager) CACRLPEM() []byte {
	return m.served.Load().caCRL
}

// Oversize returns the size of the ca-crl.pem that was not published
// because it exceeds the limit (0 while the last one fit) and the limit.
func (m *Manager) Oversize() (size, limit int) {
	return int(m.oversize.Load()), m.opts.MaxPublishBytes
}

// Run republishes every CRL at the republish interval, rebuilds after
// revocations (coalesced) and follows the external root CRL, until ctx
// ends. Start must have succeeded.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.Load() {
		return errors.New("crl: Run before Start")
	}
	if !m.runCalled.CompareAndSwap(false, true) {
		return errors.New("crl: Run called twice")
	}
	republish := m.clk.NewTimer(m.opts.Republish)
	defer republish.Stop()
	var poll <-chan time.Time
	if m.opts.External != nil {
		t := m.clk.NewTicker(externalPoll)
		defer t.Stop()
		poll = t.C()
	}
	var (
		coalesce  clock.Timer
		coalesceC <-chan time.Time
		backoff   = retryBackoff()
	)
	defer func() {
		if coalesce != nil {
			coalesce.Stop()
		}
	}()
	arm := func(d time.Duration) {
		coalesce = m.clk.NewTimer(d)
		coalesceC = coalesce.C()
	}
	// flush rebuilds the scopes revoked into, or arms a retry.
	flush := func() {
		coalesce, coalesceC = nil, nil
		if err := m.flushDirty(ctx); err != nil {
			d := backoff.Step()
			m.log.Error("rebuilding the CRLs after a revocation failed; retrying", "error", err, "retry_in", d)
			arm(d)
			return
		}
		backoff = retryBackoff()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
			if coalesce != nil {
				continue // a rebuild (or its retry) is already due
			}
			// The window runs from the first revocation since the last
			// rebuild, however late this loop sees it.
			m.mu.Lock()
			d := m.pendingSince.Add(m.opts.Coalesce).Sub(m.clk.Now())
			m.mu.Unlock()
			if d <= 0 {
				flush()
			} else {
				arm(d)
			}
		case <-coalesceC:
			flush()
		case <-republish.C():
			d := m.opts.Republish
			if err := m.republish(ctx); err != nil {
				d = min(retryBackoff().Cap, m.opts.Republish)
				m.log.Error("republishing the CRLs failed; retrying", "error", err, "retry_in", d)
			}
			republish.Reset(d)
		case <-poll:
			if err := m.followExternal(ctx); err != nil {
				m.log.Error("publishing the external root CRL failed", "error", err)
			}
		}
	}
}

// flushDirty rebuilds the scopes that revocations touched; on failure
// they stay dirty.
func (m *Manager) flushDirty(ctx context.Context) error {
	m.mu.Lock()
	dirty := m.dirty
	m.dirty = map[string]bool{}
	m.pendingSince = time.Time{}
	m.mu.Unlock()
	if err := m.rebuild(ctx, dirty, false); err != nil {
		m.mu.Lock()
		for s := range dirty {
			m.dirty[s] = true
		}
		if m.pendingSince.IsZero() {
			m.pendingSince = m.clk.Now()
		}
		m.mu.Unlock()
		return err
	}
	return nil
}

func retryBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: time.Minute}
}

// republish makes new base CRLs of every scope and prunes the revocations
// that no CRL lists any more.
func (m *Manager) republish(ctx context.Context) error {
	cutoff := m.clk.Now().Add(-m.opts.Validity)
	// Pruning goes on when one scope's CRL failed to build: the records
	// it drops are those no CRL lists any more.
	rerr := m.rebuild(ctx, m.allScopes(), true)
	if rerr != nil && !errors.As(rerr, new(*scopeBuildError)) {
		return rerr
	}
	n, err := m.opts.Store.PruneRevocations(ctx, cutoff)
	if err != nil {
		return fmt.Errorf("prune revocations: %w", err)
	}
	if n > 0 {
		m.log.Info("pruned revocations of certificates expired more than one CRL period ago", "count", n, "cutoff", cutoff.UTC())
		if err := m.loadRevoked(ctx); err != nil {
			return err
		}
	}
	return rerr
}

func (m *Manager) allScopes() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := map[string]bool{}
	for s := range m.scopes {
		all[s] = true
	}
	return all
}
