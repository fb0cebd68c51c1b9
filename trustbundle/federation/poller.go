// Package federation owns federation in: it polls the SPIFFE bundle
// endpoints of the foreign trust domains in meshca's configuration (SPIFFE
// Federation specification, profiles https_web and https_spiffe), keeps
// the last good bundle of each (in memory and in federation.stateDir) and
// hands their X.509 roots to a Sink, the trust publisher, which publishes
// them as ClusterTrustBundles for Istio. It reports each trust domain's
// staleness as metrics and as an alert.
//
// It consumes bundles and feeds trustbundle/publish; it does not serve
// meshca's own bundle and does not write to Kubernetes itself.
package federation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/smallfile"
	"github.com/meshca/meshca/rotation/alert"
)

// Bounds of one fetch.
const (
	// DefaultMaxBundleBytes bounds a bundle endpoint's response: far more
	// than a trust domain's roots, and a ClusterTrustBundle holds at most
	// 1 MiB anyway.
	DefaultMaxBundleBytes = 512 << 10
	// DefaultFetchTimeout bounds one fetch, connection to last byte.
	DefaultFetchTimeout = 30 * time.Second
)

// RuleStale is the alert raised while a foreign bundle is stale.
const RuleStale = "FederatedBundleStale"

// Sink receives the foreign roots to publish: configured lists every
// configured trust domain, roots those with a bundle. A configured trust
// domain without roots keeps whatever was published for it before.
type Sink interface {
	SetFederated(ctx context.Context, configured []string, roots map[string][]*x509.Certificate) error
}

// Alerter raises and clears alerts (rotation/alert.Engine).
type Alerter interface {
	Raise(ctx context.Context, a alert.Alert) error
	Clear(ctx context.Context, key alert.Key) error
}

// Options configure New.
type Options struct {
	Config     config.FederationConfig
	Sink       Sink // optional: without it nothing is published
	Alerts     Alerter
	Clock      clock.WithTicker
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// MaxBundleBytes and FetchTimeout bound each fetch (defaults above).
	MaxBundleBytes int64
	FetchTimeout   time.Duration
}

// domain is one configured foreign trust domain.
type domain struct {
	td         spiffeid.TrustDomain
	url        string
	endpointID spiffeid.ID         // zero for https_web
	bootstrap  *x509bundle.Bundle  // https_spiffe only
	extraRoots []*x509.Certificate // https_web caFile
}

// Poller polls the configured bundle endpoints.
type Poller struct {
	o       Options
	cfg     config.FederationConfig
	domains []*domain
	started time.Time
	log     *slog.Logger
	metrics *metrics

	mu   sync.Mutex
	last map[spiffeid.TrustDomain]Snapshot
	// publishing serializes Publish: each trust domain's poll publishes
	// the whole set, so two publications must not overlap, or the one that
	// read the older snapshots could reach the sink last and undo the other.
	publishing sync.Mutex
}

// New prepares a Poller for every trust domain of o.Config: it reads the
// bootstrap bundles and CA files and the last good bundles kept in
// stateDir. It fetches nothing; Run does.
func New(o Options) (*Poller, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxBundleBytes <= 0 {
		o.MaxBundleBytes = DefaultMaxBundleBytes
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	p := &Poller{o: o, cfg: o.Config, started: o.Clock.Now(), log: o.Log.With("component", "federation"), last: map[spiffeid.TrustDomain]Snapshot{}}
	// The kept bundles are trusted and published after a restart: nobody
	// else may write them.
	if err := os.MkdirAll(o.Config.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("federation.stateDir: %w", err)
	}
	if err := smallfile.CheckPrivateDir(o.Config.StateDir, "federation.stateDir", "choose a private federation.stateDir"); err != nil {
		return nil, err
	}
	for i, c := range o.Config.TrustDomains {
		d, err := newDomain(c)
		if err != nil {
			return nil, fmt.Errorf("federation.trustDomains[%d]: %w", i, err)
		}
		p.domains = append(p.domains, d)
		s, err := ReadSnapshot(o.Config.StateDir, d.td)
		switch {
		case err == nil:
			if s.FetchedAt.After(p.started) {
				// Written under a clock ahead of this one, or edited: it
				// must not count as fresh until then.
				p.log.Warn("the kept bundle was fetched in the future; counting its age from now", "trust_domain", d.td.Name(), "fetched_at", s.FetchedAt)
				s.FetchedAt = p.started
			}
			p.last[d.td] = s
		case notFetched(err):
		default:
			// A damaged state file costs one fetch, not the service.
			p.log.Warn("ignoring the kept bundle", "trust_domain", d.td.Name(), "error", err)
		}
	}
	p.metrics = newMetrics(p, o.Registerer)
	return p, nil
}

func newDomain(c config.FederatedTrustDomainConfig) (*domain, error) {
	td, err := identity.TrustDomain(c.TrustDomain)
	if err != nil {
		return nil, err
	}
	d := &domain{td: td, url: c.BundleEndpointURL}
	if c.CAFile != "" {
		if d.extraRoots, err = readRoots(c.CAFile); err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
	}
	if c.Profile == config.FederationProfileSPIFFE {
		if d.endpointID, err = identity.Parse(c.EndpointSPIFFEID); err != nil {
			return nil, fmt.Errorf("endpointSPIFFEID: %w", err)
		}
		roots, err := readRoots(c.BootstrapBundle)
		if err != nil {
			return nil, fmt.Errorf("bootstrapBundle: %w", err)
		}
		d.bootstrap = bootstrapBundle(td, roots)
	}
	return d, nil
}

func readRoots(path string) ([]*x509.Certificate, error) {
	b, err := smallfile.Read(path, 0)
	if err != nil {
		return nil, err
	}
	certs, err := root.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no certificate", path)
	}
	return certs, nil
}

// Snapshots returns the last good bundle of every trust domain that has one.
func (p *Poller) Snapshots() []Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Snapshot
	for _, d := range p.domains {
		if s, ok := p.last[d.td]; ok {
			out = append(out, s)
		}
	}
	return out
}

func (p *Poller) snapshot(td spiffeid.TrustDomain) (Snapshot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.last[td]
	return s, ok
}

// Run publishes the kept bundles, then polls every trust domain until ctx
// ends: each fetch is followed by a wait of the bundle's refresh hint
// clamped to [minRefresh, maxRefresh] (or the default refresh without a
// hint), and a failed fetch by a backoff from minRefresh doubling up to
// maxRefresh.
func (p *Poller) Run(ctx context.Context) {
	p.Publish(ctx)
	var wg sync.WaitGroup
	for _, d := range p.domains {
		wg.Go(func() { p.poll(ctx, d) })
	}
	wg.Wait()
}

func (p *Poller) poll(ctx context.Context, d *domain) {
	var retry func() time.Duration
	for {
		delay, err := p.refresh(ctx, d)
		if err != nil {
			if retry == nil {
				retry = p.backoff().DelayFunc()
			}
			delay = retry()
		} else {
			retry = nil
		}
		t := p.o.Clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// backoff spaces the fetches of an endpoint that keeps failing.
func (p *Poller) backoff() wait.Backoff {
	return wait.Backoff{Duration: p.cfg.MinRefresh.Duration, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: p.cfg.MaxRefresh.Duration}
}

// refresh fetches d's bundle once and returns the wait until the next
// fetch. A refused or failed fetch changes nothing but the metrics and the
// staleness alert.
func (p *Poller) refresh(ctx context.Context, d *domain) (time.Duration, error) {
	last, have := p.snapshot(d.td)
	b, err := d.fetch(ctx, last.Bundle, p.o.Clock.Now(), p.o.FetchTimeout, p.o.MaxBundleBytes)
	now := p.o.Clock.Now()
	if err != nil {
		outcome := outcomeOf(err)
		p.metrics.fetched(d.td, outcome)
		p.log.Warn("foreign bundle fetch failed; keeping the last good bundle", "trust_domain", d.td.Name(), "outcome", outcome,
			"have_bundle", have, "error", err)
		p.checkStale(ctx, d, now)
		return 0, err
	}
	if seq, ok := b.SequenceNumber(); ok && have {
		if prev, ok := last.Bundle.SequenceNumber(); ok && seq < prev {
			// A publisher must increase spiffe_sequence (SPIFFE Trust
			// Domain and Bundle §4.1.1), but consumers only use it for
			// ordering and propagation measurement: meshca follows the
			// authenticated endpoint's current bundle (a restored or
			// replaced endpoint may restart its sequence) and says so.
			p.log.Warn("foreign bundle sequence number went backwards; accepting it", "trust_domain", d.td.Name(), "sequence", seq, "previous", prev)
		}
	}
	changed := !have || !sameX509(last.Bundle, b)
	s := Snapshot{TrustDomain: d.td.Name(), FetchedAt: now, Bundle: b}
	if err := writeSnapshot(p.cfg.StateDir, d.td, s); err != nil {
		p.log.Error("cannot keep the foreign bundle in federation.stateDir; using it from memory", "trust_domain", d.td.Name(), "error", err)
	}
	p.mu.Lock()
	p.last[d.td] = s
	p.mu.Unlock()
	outcome := OutcomeUnchanged
	if changed {
		outcome = OutcomeUpdated
		seq, _ := b.SequenceNumber()
		p.log.Info("foreign bundle updated", "trust_domain", d.td.Name(), "x509_authorities", len(b.X509Authorities()), "sequence", seq)
		p.Publish(ctx)
	}
	p.metrics.fetched(d.td, outcome)
	p.checkStale(ctx, d, now)
	return p.nextRefresh(b), nil
}

// nextRefresh is b's refresh hint (or the default) clamped to
// [minRefresh, maxRefresh].
func (p *Poller) nextRefresh(b *spiffebundle.Bundle) time.Duration {
	d := config.DefaultFederationRefresh
	if hint, ok := b.RefreshHint(); ok && hint > 0 {
		d = hint
	}
	return min(max(d, p.cfg.MinRefresh.Duration), p.cfg.MaxRefresh.Duration)
}

// Publish hands the roots of every kept bundle to the sink (Run does it
// first; call it before the trust publisher starts so that the bundles of
// configured trust domains are never deleted and recreated).
func (p *Poller) Publish(ctx context.Context) {
	if p.o.Sink == nil {
		return
	}
	p.publishing.Lock()
	defer p.publishing.Unlock()
	configured := make([]string, 0, len(p.domains))
	roots := map[string][]*x509.Certificate{}
	for _, d := range p.domains {
		configured = append(configured, d.td.Name())
		if s, ok := p.snapshot(d.td); ok {
			roots[d.td.Name()] = s.Bundle.X509Authorities()
		}
	}
	if err := p.o.Sink.SetFederated(ctx, configured, roots); err != nil {
		p.log.Error("cannot publish the foreign roots", "error", err)
	}
}

// age is how old d's bundle is: since its last successful fetch, or since
// the poller started when none was ever fetched.
func (p *Poller) age(td spiffeid.TrustDomain, now time.Time) time.Duration {
	if s, ok := p.snapshot(td); ok {
		return now.Sub(s.FetchedAt)
	}
	return now.Sub(p.started)
}

// checkStale raises RuleStale while d's bundle is older than staleAfter and
// clears it otherwise.
func (p *Poller) checkStale(ctx context.Context, d *domain, now time.Time) {
	if p.o.Alerts == nil {
		return
	}
	object := "trust domain " + d.td.Name()
	age := p.age(d.td, now)
	var err error
	if age <= p.cfg.StaleAfter.Duration {
		err = p.o.Alerts.Clear(ctx, alert.KeyOf(RuleStale, object))
	} else {
		err = p.o.Alerts.Raise(ctx, alert.Alert{
			Rule: RuleStale, Object: object, Severity: alert.Warning,
			Summary: fmt.Sprintf("The federated bundle of %s was last fetched %s ago (federation.staleAfter %s) from %s.",
				d.td.Name(), age.Truncate(time.Second), p.cfg.StaleAfter.Duration, d.url),
			Action: "meshca keeps publishing the last good bundle and retries with backoff; check the foreign bundle endpoint and meshca's log.",
		})
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		p.log.Warn("cannot update the staleness alert", "trust_domain", d.td.Name(), "error", err)
	}
}
