package authn

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/url"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"

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
// itself issued: it must verify to the mesh roots, be known to the issuance
// store with the same fingerprint, not be revoked, and carry exactly one
// SPIFFE URI SAN in the trust domain.
//
// A certificate that passed the chain and record checks is remembered (by
// its SHA-256) for up to VerifiedTTL, while the mesh roots are unchanged,
// so that a connection's renewals do not rebuild the chain every time.
// The memory is a bounded LRU with expiry (LRUExpireCache, the front
// door's one cache implementation): when full it forgets the least
// recently used certificate. Revocation is checked on every request.
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

	once     sync.Once
	verified *cache.LRUExpireCache // [32]byte → verifiedCert
}

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

// Name implements Authenticator.
func (*ClientCert) Name() string { return ClientCertificate }

// Authenticate implements Authenticator.
func (a *ClientCert) Authenticate(ctx context.Context, creds Credentials) (*Caller, error) {
	if len(creds.PeerCertificates) == 0 {
		return nil, ErrNoCredentials
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
	inters := a.Trust.Intermediates()
	if len(creds.PeerCertificates) > 1 {
		inters = inters.Clone()
		for _, c := range creds.PeerCertificates[1:] {
			inters.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inters, CurrentTime: now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fail(ClientCertificate, "untrusted_certificate", "client certificate does not verify to the mesh roots")
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
