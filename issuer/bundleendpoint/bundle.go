// Package bundleendpoint serves the mesh trust domain's SPIFFE bundle over
// HTTPS: a SPIFFE bundle endpoint (SPIFFE Federation specification,
// section 4) in the https_web or https_spiffe profile (section 5.2). The
// bundle is the JWK Set of the SPIFFE Trust Domain and Bundle
// specification (section 4): one "x509-svid" key per trust anchor meshca
// publishes for Istio, with spiffe_sequence and spiffe_refresh_hint.
//
// It owns the bundle document (built with go-spiffe, numbered through the
// store so that the sequence never goes backwards, across restarts and
// replicas), its HTTP handler and server with their limits, and the
// reloading of https_web's certificate files. It does not decide the roots
// (the active CA material does), issue certificates (the authority does,
// through tlsconfig.ServingCert) or fetch foreign bundles.
package bundleendpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// DefaultPoll is how often the Bundler compares the roots with those it
// serves (a hash of a few certificates).
const DefaultPoll = time.Second

// DefaultFollowPoll is how often a Bundler that does not lead reads the
// bundle last numbered from the store (one read of one row).
const DefaultFollowPoll = 5 * time.Second

// DefaultBackoff is the retry delay after a failed refresh (the store is
// unreachable): it doubles from 1s up to 30s, jittered.
var DefaultBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 1, Steps: math.MaxInt32, Cap: 30 * time.Second}

// Document is one served bundle.
type Document struct {
	// JSON is the bundle as served.
	JSON []byte
	// ETag is a strong entity tag of JSON (RFC 9110 section 8.8.3).
	ETag string
	// Sequence is its spiffe_sequence.
	Sequence uint64
	// Digest is the SHA-256 of its content (ContentDigest).
	Digest [32]byte
	// Authorities are its X.509 authorities, in the order served.
	Authorities []*x509.Certificate
}

// ContentDigest is the SHA-256 that numbers a bundle's content: its X.509
// authorities as a set (each DER, length-prefixed, in byte order), so
// that replicas holding the same roots in another order agree.
func ContentDigest(authorities []*x509.Certificate) [32]byte {
	ders := make([][]byte, 0, len(authorities))
	for _, c := range authorities {
		ders = append(ders, c.Raw)
	}
	slices.SortFunc(ders, bytes.Compare)
	h := sha256.New()
	var n [8]byte
	for _, d := range ders {
		binary.BigEndian.PutUint64(n[:], uint64(len(d)))
		h.Write(n[:])
		h.Write(d)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Options configure a Bundler.
type Options struct {
	TrustDomain spiffeid.TrustDomain
	// Roots returns the trust anchors meshca publishes now (the active
	// material's roots: both the old and the new during a root rotation).
	Roots func() []*x509.Certificate
	// Sequences numbers the contents and keeps the last one; shared by
	// the replicas.
	Sequences store.BundleSequences
	// Leading reports whether this replica holds the Lease of meshca's
	// singleton jobs; nil means one replica, always. Only the holder
	// numbers its roots: the other replicas serve the bundle it numbered
	// last, from the store, so that every replica serves the same bundle
	// even while a follower's own view of the roots lags (a root rotation
	// runs on the holder). Before anything was numbered a follower numbers
	// its own roots.
	Leading func() bool
	// RefreshHint is spiffe_refresh_hint.
	RefreshHint time.Duration
	// Clock drives polling and retries; nil means the real clock.
	Clock clock.WithTicker
	// Poll is how often Run compares the roots; zero means DefaultPoll.
	Poll time.Duration
	// FollowPoll is how often Run reads the store when not leading; zero
	// means DefaultFollowPoll.
	FollowPoll time.Duration
	// Backoff is the retry delay after a failed refresh; zero means DefaultBackoff.
	Backoff wait.Backoff
	Log     *slog.Logger
}

// Bundler keeps the current bundle document: Refresh rebuilds it when the
// roots changed, Run does so in the background. Requests only read it.
type Bundler struct {
	o       Options
	cur     atomic.Pointer[Document]
	mu      sync.Mutex // serialises refreshes
	metrics *metrics
}

// New checks o; Refresh (or Start) builds the first document.
func New(o Options) (*Bundler, error) {
	switch {
	case o.TrustDomain.IsZero():
		return nil, errors.New("bundleendpoint: no trust domain")
	case o.Roots == nil:
		return nil, errors.New("bundleendpoint: no roots")
	case o.Sequences == nil:
		return nil, errors.New("bundleendpoint: the store keeps no bundle sequences")
	case o.RefreshHint < time.Second:
		return nil, fmt.Errorf("bundleendpoint: refresh hint %s is under a second", o.RefreshHint)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.FollowPoll <= 0 {
		o.FollowPoll = DefaultFollowPoll
	}
	if o.Backoff.Duration <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Bundler{o: o, metrics: newMetrics()}, nil
}

// Current is the document served now; nil before the first refresh.
func (b *Bundler) Current() *Document { return b.cur.Load() }

// Refresh updates the document: the Lease holder (or the one replica)
// builds it from the current roots unless it serves their content
// already, numbering a changed content through the store first; another
// replica serves the content the store holds. On failure nothing changes
// and the error says why.
func (b *Bundler) Refresh(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.leading() {
		return b.follow(ctx)
	}
	return b.lead(ctx)
}

func (b *Bundler) leading() bool { return b.o.Leading == nil || b.o.Leading() }

// lead numbers and serves this replica's roots.
func (b *Bundler) lead(ctx context.Context) error {
	roots := dedupe(b.o.Roots())
	if len(roots) == 0 {
		return errors.New("bundleendpoint: no roots to serve")
	}
	digest := ContentDigest(roots)
	if cur := b.cur.Load(); cur != nil && cur.Digest == digest {
		return nil
	}
	seq, err := b.o.Sequences.BundleSequence(ctx, b.o.TrustDomain.Name(), digest, root.EncodePEM(roots...))
	if err != nil {
		return fmt.Errorf("bundleendpoint: numbering the bundle: %w", err)
	}
	return b.serveDoc(roots, seq, digest)
}

// follow serves the content the store numbered last (the Lease holder's).
func (b *Bundler) follow(ctx context.Context) error {
	rec, err := b.o.Sequences.GetBundle(ctx, b.o.TrustDomain.Name())
	if errors.Is(err, store.ErrNotFound) {
		return b.lead(ctx)
	}
	if err != nil {
		return fmt.Errorf("bundleendpoint: reading the bundle the lease holder numbered: %w", err)
	}
	if cur := b.cur.Load(); cur != nil && cur.Digest == rec.Digest {
		return nil
	}
	roots, err := root.ParseCertificates(rec.Content)
	if err != nil {
		return fmt.Errorf("bundleendpoint: the roots of bundle %d in the store: %w", rec.Sequence, err)
	}
	if ContentDigest(roots) != rec.Digest {
		return fmt.Errorf("bundleendpoint: the roots of bundle %d in the store do not match its digest", rec.Sequence)
	}
	return b.serveDoc(roots, rec.Sequence, rec.Digest)
}

// serveDoc builds the document of roots and serves it. The store hands
// out higher numbers for new contents only, and this content differs
// from the current one: its number is higher than the current one's.
func (b *Bundler) serveDoc(roots []*x509.Certificate, seq uint64, digest [32]byte) error {
	doc, err := build(b.o.TrustDomain, roots, seq, digest, b.o.RefreshHint)
	if err != nil {
		return err
	}
	b.cur.Store(doc)
	b.metrics.set(doc)
	b.o.Log.Info("serving the SPIFFE bundle", "trust_domain", b.o.TrustDomain.Name(), "sequence", seq, "authorities", len(roots))
	return nil
}

// build marshals the bundle with go-spiffe (SPIFFE Trust Domain and
// Bundle specification, section 4).
func build(td spiffeid.TrustDomain, roots []*x509.Certificate, seq uint64, digest [32]byte, hint time.Duration) (*Document, error) {
	sb := spiffebundle.FromX509Authorities(td, roots)
	sb.SetSequenceNumber(seq)
	sb.SetRefreshHint(hint)
	js, err := sb.Marshal()
	if err != nil {
		// go-jose has no JWK form for ML-DSA or composite keys.
		return nil, fmt.Errorf("bundleendpoint: the roots have no JWK form (SPIFFE bundles carry RSA and EC keys): %w", err)
	}
	sum := sha256.Sum256(js)
	return &Document{
		JSON: js, ETag: `"` + strconv.FormatUint(seq, 10) + "-" + hex.EncodeToString(sum[:12]) + `"`,
		Sequence: seq, Digest: digest, Authorities: roots,
	}, nil
}

func dedupe(certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if c != nil && !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}

// Start builds the first document, failing if that fails, and refreshes
// in the background until ctx ends.
func (b *Bundler) Start(ctx context.Context) error {
	if err := b.Refresh(ctx); err != nil {
		return err
	}
	go b.Run(ctx)
	return nil
}

// Run refreshes every Poll, and after a failure with backoff, until ctx
// ends. A failure keeps the current document.
func (b *Bundler) Run(ctx context.Context) {
	var retry wait.DelayFunc
	for {
		d := b.o.Poll
		if !b.leading() {
			d = b.o.FollowPoll
		}
		if err := b.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.metrics.refreshFailures.Inc()
			if retry == nil {
				retry = b.o.Backoff.DelayFunc()
			}
			d = retry()
			b.o.Log.Warn("refreshing the SPIFFE bundle failed; serving the current one", "error", err, "retry_in", d)
		} else if retry != nil {
			retry = nil
			b.o.Log.Info("refreshing the SPIFFE bundle works again")
		}
		t := b.o.Clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
