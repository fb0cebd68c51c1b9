package authn

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/store"
)

// TrustSource gives the current verification material; it changes on rotation.
type TrustSource interface {
	// Roots are the mesh roots; Intermediates are the CA certificates below them.
	Roots() *x509.CertPool
	Intermediates() *x509.CertPool
}

// RevocationChecker reports whether a certificate serial (lower-case hex) is revoked.
type RevocationChecker interface {
	IsRevoked(ctx context.Context, serial string) (bool, error)
}

// ClientCert authenticates a caller by a client certificate that meshca
// itself issued: it must verify through meshca's own intermediates (never
// certificates the caller sent; a chain of more than MaxClientChainLength
// is refused unchecked) to the mesh roots, be known to the issuance
// store with the same fingerprint, not be revoked, and carry exactly one
// SPIFFE URI SAN in the trust domain.
//
// A certificate that passed the chain and record checks is remembered (by
// its SHA-256) for up to VerifiedTTL, while the mesh roots are unchanged,
// so that a connection's renewals do not rebuild the chain every time.
// The memory is a bounded LRU with expiry (LRUExpireCache, the front
// door's one cache implementation): when full it forgets the least
// recently used certificate. A certificate that fails verification is
// remembered likewise (up to DefaultRefusedSize, apart from the
// successes), so that resending it costs no signature check. Revocation
// is checked on every request.
type ClientCert struct {
	Trust       TrustSource
	Records     store.Issuances
	Revocations RevocationChecker
	TrustDomain string
	// Clock is the clock; default the real one.
	Clock clock.PassiveClock
	// VerifiedTTL bounds how long a verified certificate is remembered;
	// zero means one minute, negative disables the memory.
	VerifiedTTL time.Duration
	// VerifiedSize bounds the memory; zero means 65536.
	VerifiedSize int
	// Untrusted, when set, names more CA lineages (store.Generation.Signer)
	// whose stored generations are never trusted for client certificates.
	// A plug-in cluster's intermediate (config.IsClusterLineage), whose
	// key is written into that cluster's cacerts Secret, never is, with or
	// without it.
	Untrusted func(lineage string) bool

	once     sync.Once
	verified *cache.LRUExpireCache // [32]byte → verifiedCert

	refused *cache.LRUExpireCache // [32]byte → refusedCert

	mu       sync.Mutex
	previous []*x509.CertPool // intermediates of earlier generations, newest first
	current  *x509.CertPool
	stored   *x509.CertPool // CA generations from the store

	verifyHook func() // tests: called before each signature verification
}

type refusedCert struct {
	roots, inters *x509.CertPool
}

// ReasonChainTooLong: the client sent more certificates than
// MaxClientChainLength.
const ReasonChainTooLong = "chain_too_long"

// MaxClientChainLength bounds the certificates a client may send: its leaf
// and the intermediates above it (istio-agent sends the chain meshca gave
// it, leaf first). A longer chain is refused before any signature check.
const MaxClientChainLength = 4

// DefaultRefusedSize bounds the memory of certificates that failed
// verification.
const DefaultRefusedSize = 4096

// previousGenerations is how many earlier intermediate sets (seen through
// TrustSource across rotations) still verify client certificates.
const previousGenerations = 2

var errUntrusted = fail(ClientCertificate, "untrusted_certificate", "client certificate was not issued by this meshca's intermediates under the mesh roots")

type verifiedCert struct {
	identity *url.URL
	roots    *x509.CertPool
}

// DefaultVerifiedSize bounds the memory of verified certificates.
const DefaultVerifiedSize = 65536

func (a *ClientCert) clock() clock.PassiveClock {
	if a.Clock == nil {
		return clock.RealClock{}
	}
	return a.Clock
}

func (a *ClientCert) memory() *cache.LRUExpireCache {
	a.once.Do(func() {
		size := a.VerifiedSize
		if size <= 0 {
			size = DefaultVerifiedSize
		}
		a.verified = cache.NewLRUExpireCacheWithClock(size, a.clock())
		a.refused = cache.NewLRUExpireCacheWithClock(DefaultRefusedSize, a.clock())
	})
	return a.verified
}

func (a *ClientCert) remembered(sum [32]byte, roots *x509.CertPool) *url.URL {
	if a.VerifiedTTL < 0 {
		return nil
	}
	v, ok := a.memory().Get(sum)
	if !ok || v.(verifiedCert).roots != roots {
		return nil
	}
	return v.(verifiedCert).identity
}

func (a *ClientCert) remember(sum [32]byte, id *url.URL, roots *x509.CertPool, leaf *x509.Certificate, now time.Time) {
	ttl := a.VerifiedTTL
	if ttl < 0 {
		return
	}
	if ttl == 0 {
		ttl = time.Minute
	}
	ttl = min(ttl, leaf.NotAfter.Sub(now))
	if ttl <= 0 {
		return
	}
	a.memory().Add(sum, verifiedCert{identity: id, roots: roots}, ttl)
}

// intermediates returns meshca's own intermediate pools: the trust
// source's current one first, then those it gave before the latest
// rotations, then the certificates of every CA generation the store keeps
// (when Records is also a store.Generations, as meshca's store is), so
// that certificates issued by a retired intermediate keep verifying until
// they expire or the roots change, across restarts too. The store is read
// once per change of the current pool.
func (a *ClientCert) intermediates(ctx context.Context, now time.Time) []*x509.CertPool {
	cur := a.Trust.Intermediates()
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur != a.current {
		if a.current != nil {
			a.previous = append([]*x509.CertPool{a.current}, a.previous...)
			a.previous = a.previous[:min(len(a.previous), previousGenerations)]
		}
		a.current = cur
		a.stored = a.generationPool(ctx, now)
	}
	pools := append([]*x509.CertPool{cur}, a.previous...)
	if a.stored != nil {
		pools = append(pools, a.stored)
	}
	return pools
}

// generationPool holds the certificates of the CA generations in the store
// that were activated and have not expired (nil when there are none or the
// store keeps no generations).
func (a *ClientCert) generationPool(ctx context.Context, now time.Time) *x509.CertPool {
	gs, ok := a.Records.(store.Generations)
	if !ok {
		return nil
	}
	gens, err := gs.ListGenerations(ctx)
	if err != nil {
		slog.Warn("authn: CA generations cannot be read; client certificates of retired intermediates will not verify", "error", err)
		return nil
	}
	var pool *x509.CertPool
	for _, g := range gens {
		if g.ActivatedAt.IsZero() {
			continue // never signed anything
		}
		if config.IsClusterLineage(g.Lineage()) || a.Untrusted != nil && a.Untrusted(g.Lineage()) {
			continue // its key is held outside meshca
		}
		for _, der := range append([][]byte{g.CertDER}, g.ChainDER...) {
			c, err := x509.ParseCertificate(der)
			if err != nil || !now.Before(c.NotAfter) {
				continue
			}
			if pool == nil {
				pool = x509.NewCertPool()
			}
			pool.AddCert(c)
		}
	}
	return pool
}

// verify checks the leaf against meshca's own intermediates and the mesh
// roots only. The certificates the client sent after its leaf are never
// used: meshca issued every client certificate it accepts, so the chain is
// known, and a chain built from caller-supplied certificates would let the
// caller choose how many signatures are checked (RFC 5280 §6.1 path
// building over up to 100 candidates in crypto/x509).
func (a *ClientCert) verify(ctx context.Context, leaf *x509.Certificate, roots *x509.CertPool, now time.Time) bool {
	for _, inters := range a.intermediates(ctx, now) {
		if a.verifyHook != nil {
			a.verifyHook()
		}
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inters, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err == nil {
			return true
		}
	}
	return false
}

// isRefused reports whether the certificate failed verification recently
// against the same roots and current intermediates.
func (a *ClientCert) isRefused(sum [32]byte, roots *x509.CertPool) bool {
	if a.VerifiedTTL < 0 {
		return false
	}
	a.memory()
	r, ok := a.refused.Get(sum)
	if !ok {
		return false
	}
	rc := r.(refusedCert)
	return rc.roots == roots && rc.inters == a.Trust.Intermediates()
}

// refuse remembers a failed verification for VerifiedTTL (default one
// minute) in a bounded LRU apart from the successes, so that a certificate
// sent again costs no signature check and garbage never evicts a success.
func (a *ClientCert) refuse(sum [32]byte, roots *x509.CertPool) {
	ttl := a.VerifiedTTL
	if ttl < 0 {
		return
	}
	if ttl == 0 {
		ttl = time.Minute
	}
	a.memory()
	a.refused.Add(sum, refusedCert{roots: roots, inters: a.Trust.Intermediates()}, ttl)
}

// Name implements Authenticator.
func (*ClientCert) Name() string { return ClientCertificate }

// Authenticate implements Authenticator.
func (a *ClientCert) Authenticate(ctx context.Context, creds Credentials) (*Caller, error) {
	if len(creds.PeerCertificates) == 0 {
		return nil, ErrNoCredentials
	}
	if len(creds.PeerCertificates) > MaxClientChainLength {
		return nil, fail(ClientCertificate, ReasonChainTooLong,
			fmt.Sprintf("the client sent %d certificates, more than %d", len(creds.PeerCertificates), MaxClientChainLength))
	}
	now := a.clock().Now
	leaf := creds.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
	roots := a.Trust.Roots()
	if id := a.remembered(sum, roots); id != nil {
		if err := a.checkRevoked(ctx, serial); err != nil {
			return nil, err
		}
		return &Caller{Identity: id}, nil
	}
	if a.isRefused(sum, roots) {
		return nil, errUntrusted
	}
	if !a.verify(ctx, leaf, roots, now()) {
		a.refuse(sum, roots)
		return nil, errUntrusted
	}
	id, ok := a.workloadID(leaf)
	if !ok {
		return nil, fail(ClientCertificate, "no_identity", "client certificate carries no single SPIFFE ID of this trust domain")
	}
	if a.Records != nil {
		rec, err := a.Records.GetIssuance(ctx, serial)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fail(ClientCertificate, "unknown_certificate", "client certificate was not issued by this meshca")
		}
		if err != nil {
			return nil, err
		}
		if rec.Fingerprint != hex.EncodeToString(sum[:]) {
			return nil, fail(ClientCertificate, "unknown_certificate", "client certificate does not match meshca's record of its serial")
		}
	}
	if err := a.checkRevoked(ctx, serial); err != nil {
		return nil, err
	}
	a.remember(sum, id, roots, leaf, now())
	return &Caller{Identity: id}, nil
}

// workloadID is the leaf's one URI SAN if it is a workload's SPIFFE ID in
// the trust domain (SPIFFE-ID §2, X509-SVID §3.1: exactly one URI SAN, a
// non-root path).
func (a *ClientCert) workloadID(leaf *x509.Certificate) (*url.URL, bool) {
	td, err := identity.TrustDomain(a.TrustDomain)
	if err != nil || len(leaf.URIs) != 1 {
		return nil, false
	}
	id, err := identity.WorkloadURL(leaf.URIs[0], td)
	if err != nil {
		return nil, false
	}
	return id.URL(), true
}

func (a *ClientCert) checkRevoked(ctx context.Context, serial string) error {
	if a.Revocations == nil {
		return nil
	}
	revoked, err := a.Revocations.IsRevoked(ctx, serial)
	if err != nil {
		return err
	}
	if revoked {
		return fail(ClientCertificate, "revoked_certificate", "client certificate is revoked")
	}
	return nil
}
