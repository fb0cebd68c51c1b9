package tlsconfig

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/authority"
)

// Issuer issues meshca's serving certificates; *authority.Authority is one.
type Issuer interface {
	IssueServing(ctx context.Context, pub crypto.PublicKey, dnsNames []string, ips []net.IP, ttl time.Duration) (*authority.Serving, error)
	// Material is the active signing material; its Generation changes when
	// the CA rotates.
	Material() *authority.Material
}

// SVIDIssuer issues the X.509-SVIDs of meshca's own endpoints;
// *authority.Authority is one.
type SVIDIssuer interface {
	IssueServingSVID(ctx context.Context, pub crypto.PublicKey, id spiffeid.ID, dnsNames []string, ttl time.Duration) (*authority.Serving, error)
}

// RenewFraction is the part of a serving certificate's lifetime after
// which it is renewed.
const RenewFraction = 2.0 / 3

// minRenewInterval bounds how soon a fresh certificate is renewed again by
// time, should it be short-lived (capped by an intermediate that is about
// to expire): a renewal records an issuance, so it must not spin.
const minRenewInterval = time.Minute

// DefaultRotationPoll is how often the renewal loop looks for a new CA
// generation (an atomic read).
const DefaultRotationPoll = time.Second

// DefaultBackoff is the retry delay after a failed issuance: it doubles
// from 1s up to 1m and is jittered to [d/2, d].
var DefaultBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 1, Steps: math.MaxInt32, Cap: 30 * time.Second}

// ErrNotIssued is returned to handshakes before the first certificate.
var ErrNotIssued = errors.New("meshca's serving certificate is not issued yet")

// ServingCert keeps a serving certificate issued by meshca to itself.
// Start issues the first one; a background loop renews it once
// RenewFraction of its lifetime has passed, or as soon as the CA generation
// changes, and retries failures with capped exponential backoff. Handshakes
// only read the current certificate: a failing or stalled issuance (a full
// disk, a locked key store) never delays them.
type ServingCert struct {
	Authority Issuer
	DNSNames  []string
	IPs       []net.IP
	TTL       time.Duration
	// SPIFFEID, when set, makes the certificate an X.509-SVID with this
	// ID (and DNSNames; IPs are not used): Authority must then also be an
	// SVIDIssuer.
	SPIFFEID spiffeid.ID

	// Clock drives renewal and retries; nil means the real clock.
	Clock clock.WithTicker
	// Backoff is the retry delay after a failed issuance; a zero value
	// means DefaultBackoff. A new failure streak starts from Duration.
	Backoff wait.Backoff
	// RotationPoll is how often the loop checks the CA generation; zero
	// means DefaultRotationPoll.
	RotationPoll time.Duration
	// Log receives renewal failures and recoveries; nil means slog.Default.
	Log *slog.Logger
	// Registerer, if set, gets meshca_serving_cert_renewals_total and
	// meshca_serving_cert_expiry_timestamp_seconds when Start succeeds.
	Registerer prometheus.Registerer

	cur      atomic.Pointer[served]
	renewals *prometheus.CounterVec
	// issueMu serialises the loop's renewals and Reissue.
	issueMu sync.Mutex
}

// served is one issued certificate with what decides its renewal.
type served struct {
	cert    *tls.Certificate
	gen     uint64
	renewAt time.Time
}

// GetCertificate implements tls.Config.GetCertificate: a lock-free read of
// the current certificate.
func (s *ServingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cur.Load(); c != nil {
		return c.cert, nil
	}
	return nil, ErrNotIssued
}

// Current returns the current certificate, nil before Start.
func (s *ServingCert) Current() *tls.Certificate {
	if c := s.cur.Load(); c != nil {
		return c.cert
	}
	return nil
}

// Leaf returns the current leaf (for tests and logs), nil before Start.
func (s *ServingCert) Leaf() *x509.Certificate {
	if c := s.Current(); c != nil {
		return c.Leaf
	}
	return nil
}

// Start issues the first certificate, failing if that fails, registers the
// metrics and renews in the background until ctx ends.
func (s *ServingCert) Start(ctx context.Context) error {
	if err := s.first(ctx); err != nil {
		return err
	}
	go s.loop(ctx)
	return nil
}

// Run is Start that renews in the calling goroutine: it returns the first
// issuance's error, or nil once ctx ends.
func (s *ServingCert) Run(ctx context.Context) error {
	if err := s.first(ctx); err != nil {
		return err
	}
	s.loop(ctx)
	return nil
}

func (s *ServingCert) first(ctx context.Context) error {
	if s.Authority == nil {
		return errors.New("tlsconfig: ServingCert has no Authority")
	}
	if s.cur.Load() != nil {
		return errors.New("tlsconfig: ServingCert started twice")
	}
	s.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshca_serving_cert_renewals_total",
		Help: "Issuances of meshca's own TLS serving certificate (the first and every renewal), by result.",
	}, []string{"result"})
	s.renewals.WithLabelValues("success")
	s.renewals.WithLabelValues("failure")
	if err := s.renew(ctx); err != nil {
		return fmt.Errorf("issuing meshca's serving certificate: %w", err)
	}
	if s.Registerer == nil {
		return nil
	}
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshca_serving_cert_expiry_timestamp_seconds",
		Help: "The notAfter of meshca's current TLS serving certificate, in seconds since the epoch.",
	}, func() float64 { return float64(s.Leaf().NotAfter.Unix()) })
	for _, c := range []prometheus.Collector{s.renewals, expiry} {
		if err := s.Registerer.Register(c); err != nil {
			return fmt.Errorf("registering serving certificate metrics: %w", err)
		}
	}
	return nil
}

func (s *ServingCert) clock() clock.WithTicker {
	if s.Clock != nil {
		return s.Clock
	}
	return clock.RealClock{}
}

func (s *ServingCert) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// loop renews the certificate when it is due, retrying failures with
// backoff, until ctx ends.
func (s *ServingCert) loop(ctx context.Context) {
	b := s.Backoff
	if b.Duration <= 0 {
		b = DefaultBackoff
	}
	poll := s.RotationPoll
	if poll <= 0 {
		poll = DefaultRotationPoll
	}
	var retry wait.DelayFunc // non-nil during a failure streak
	for {
		if retry == nil {
			d, due := s.untilDue()
			if !due {
				if !s.sleep(ctx, min(d, poll)) {
					return
				}
				continue
			}
		}
		err := s.renewDue(ctx, retry != nil)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if retry != nil {
				s.log().Info("meshca's serving certificate renewed after failures", "not_after", s.Leaf().NotAfter)
			}
			retry = nil
			continue
		}
		if retry == nil {
			retry = b.DelayFunc()
		}
		d := retry()
		s.log().Warn("renewing meshca's serving certificate failed; handshakes keep the current one",
			"error", err, "retry_in", d, "current_not_after", s.Leaf().NotAfter)
		if !s.sleep(ctx, d) {
			return
		}
	}
}

// untilDue reports whether the certificate is due for renewal (its renewal
// time has come, or the CA generation changed) and, if not, how long until
// its renewal time.
func (s *ServingCert) untilDue() (time.Duration, bool) {
	c := s.cur.Load()
	d := c.renewAt.Sub(s.clock().Now())
	if d <= 0 {
		return 0, true
	}
	if m := s.Authority.Material(); m != nil && m.Generation != c.gen {
		return 0, true
	}
	return d, false
}

// sleep waits for d on the clock; false means ctx ended.
func (s *ServingCert) sleep(ctx context.Context, d time.Duration) bool {
	t := s.clock().NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// renewDue is the loop's renewal: unless retrying, it renews only if the
// certificate is still due once it holds issueMu (Reissue may have
// renewed it meanwhile).
func (s *ServingCert) renewDue(ctx context.Context, retrying bool) error {
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	if _, due := s.untilDue(); !retrying && !due {
		return nil
	}
	return s.renewLocked(ctx)
}

// renew issues a certificate for a new key and makes it current.
func (s *ServingCert) renew(ctx context.Context) error {
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	return s.renewLocked(ctx)
}

// renewLocked is renew; the caller holds issueMu.
func (s *ServingCert) renewLocked(ctx context.Context) error {
	err := s.issue(ctx)
	result := "success"
	if err != nil {
		result = "failure"
	}
	s.renewals.WithLabelValues(result).Inc()
	return err
}

func (s *ServingCert) issue(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	var sv *authority.Serving
	if s.SPIFFEID.IsZero() {
		sv, err = s.Authority.IssueServing(ctx, key.Public(), s.DNSNames, s.IPs, s.TTL)
	} else if si, ok := s.Authority.(SVIDIssuer); ok {
		sv, err = si.IssueServingSVID(ctx, key.Public(), s.SPIFFEID, s.DNSNames, s.TTL)
	} else {
		err = fmt.Errorf("tlsconfig: %T cannot issue X.509-SVIDs", s.Authority)
	}
	if err != nil {
		return err
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: sv.Leaf}
	for _, x := range sv.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	life := sv.Leaf.NotAfter.Sub(sv.Leaf.NotBefore)
	renewAt := sv.Leaf.NotBefore.Add(time.Duration(float64(life) * RenewFraction))
	renewAt = later(renewAt, s.clock().Now().Add(minRenewInterval))
	s.cur.Store(&served{cert: c, gen: sv.Generation, renewAt: renewAt})
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Reissue issues a certificate from the active CA generation now, unless
// the current one already comes from it. The rotation fan-out calls it on
// activation, so that the endpoints serve the new chain together with
// everything else that moves, rather than at the loop's next poll; a
// failure keeps the current certificate (the loop retries).
func (s *ServingCert) Reissue(ctx context.Context) error {
	if s.cur.Load() == nil {
		return ErrNotIssued
	}
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	if m := s.Authority.Material(); m == nil || m.Generation == s.cur.Load().gen {
		return nil
	}
	if err := s.renewLocked(ctx); err != nil {
		return fmt.Errorf("reissuing meshca's serving certificate: %w", err)
	}
	return nil
}
