// Package vault is meshca's HashiCorp Vault root source: the enterprise
// root lives in a Vault PKI secrets engine, which signs meshca's
// intermediate from a CSR (Vault's PKI API, "Sign intermediate":
// https://developer.hashicorp.com/vault/api-docs/secret/pki#sign-intermediate). It owns the Vault client (TLS,
// namespace, token/AppRole/Kubernetes login, lease renewal, re-login), the
// sign-intermediate call and the strict checks on what Vault returns, the
// trust material (root chain and the root's CRL) and the outage handling
// (typed errors, a health loop with capped backoff, metrics).
//
// *Source implements root.Source: meshca's Loader creates the
// intermediate's key in its key store and hands MintIntermediate only a
// CSR (the private key never goes to Vault). The package must not touch
// the key store, nor the record store, nor any other root: when Vault is
// down it fails calls with ErrUnavailable (root.ErrUnavailable) and the
// caller keeps issuing with its current intermediate. Tokens and
// secret_ids never appear in logs or errors.
package vault

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/root"
)

// SourceName is the value of the source label on meshca's root-source
// metrics.
const SourceName = "vault"

// SleepFunc waits for d or until ctx ends, returning ctx's error then.
// Background loops sleep through it so that tests can drive them.
type SleepFunc func(ctx context.Context, d time.Duration) error

// Source is a Vault PKI mount acting as meshca's root. It is safe for
// concurrent use.
type Source struct {
	cfg      config.VaultConfig
	api      *vaultapi.Client
	auth     authenticator
	log      *slog.Logger
	now      func() time.Time
	sleep    SleepFunc
	rootPin  string
	signPath string

	loginMu  sync.Mutex    // serialises logins
	tokenGen atomic.Uint64 // bumped by every successful login
	lease    atomic.Pointer[tokenLease]
	authErr  atomic.Pointer[error] // the last login failure, nil after a success
	logins   atomic.Uint64
	renewals atomic.Uint64

	trust atomic.Pointer[trustMaterial]
	crl   atomic.Pointer[x509.RevocationList]
	// crlMemory keeps the CRL taken in meshca's store (WithCRLMemory).
	crlMemory *root.CRLMemory

	up          atomic.Bool
	lastSuccess atomic.Int64          // unix nanoseconds
	lastErr     atomic.Pointer[error] // why Vault was last found down

	// validated is false while a source opened WithDeferredValidation has
	// not yet completed New's checks (Vault was unavailable at start-up);
	// pending is the last reason. The health loop completes them.
	validated   atomic.Bool
	validateMu  sync.Mutex // serialises completing the deferred validation
	pending     atomic.Pointer[error]
	expectRoots atomic.Pointer[[]*x509.Certificate]
}

// Option configures New.
type Option func(*options)

type options struct {
	log             *slog.Logger
	reg             prometheus.Registerer
	now             func() time.Time
	sleep           SleepFunc
	env             func(string) string
	deferValidation bool
	crlMemory       *root.CRLMemory
}

// WithLogger logs through l (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers meshca_root_source_up and
// meshca_root_source_last_success_timestamp_seconds (source="vault") with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithClock makes the source read time from now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSleep makes the background loops wait through sleep.
func WithSleep(sleep SleepFunc) Option { return func(o *options) { o.sleep = sleep } }

// WithCRLMemory keeps each CRL the source takes in meshca's store and
// compares what Vault serves with the one kept there too, so that no
// restart or replica takes an older CRL than was taken before.
func WithCRLMemory(m *root.CRLMemory) Option { return func(o *options) { o.crlMemory = m } }

// WithEnv reads environment variables (VAULT_TOKEN) through getenv
// instead of os.Getenv.
func WithEnv(getenv func(string) string) Option { return func(o *options) { o.env = getenv } }

// WithDeferredValidation lets New succeed when Vault is unavailable
// (unreachable or sealed, ErrUnavailable) at start-up: it returns a Source
// that is down and not yet validated. Until the health loop (Run) finds
// Vault serving and completes the checks, Roots, CRL and SignIntermediate
// fail with ErrUnavailable and CurrentRoots and CurrentCRL are empty, so
// that the caller signs with an intermediate it already holds and never
// mints a new one. Configuration errors reported by a reachable Vault
// still fail New.
func WithDeferredValidation() Option { return func(o *options) { o.deferValidation = true } }

// ErrUnavailable is matched (errors.Is) by every error caused by Vault
// being unreachable, sealed or otherwise not serving. It is the root
// source's root.ErrUnavailable, so that callers need not know the kind.
var ErrUnavailable = root.ErrUnavailable

// ErrPermissionDenied is matched by errors for requests that Vault refused
// even after a fresh login: the token's policies lack the path.
var ErrPermissionDenied = errors.New("vault permission denied")

// UnavailableError says why Vault could not serve a call.
type UnavailableError struct {
	// Op is what meshca was doing, e.g. "sign-intermediate".
	Op string
	// Sealed is true when Vault answered that it is sealed.
	Sealed bool
	Err    error
}

func (e *UnavailableError) Error() string {
	why := "unreachable"
	if e.Sealed {
		why = "sealed"
	}
	return fmt.Sprintf("vault %s: Vault is %s: %v", e.Op, why, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// New connects to Vault, logs in and validates the setup before anything
// is written anywhere: the mount holds a PKI root, that root matches the
// configured fingerprint, the token may call sign-intermediate, and the
// root's CRL is served. Errors name the problem and the configuration key.
// Call Run to start the background loops.
func New(ctx context.Context, cfg config.VaultConfig, opts ...Option) (*Source, error) {
	cfg.Init()
	var errs []error
	cfg.Validate(func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid vault configuration:\n%w", err)
	}
	o := &options{log: slog.Default(), now: time.Now, sleep: sleepCtx}
	for _, opt := range opts {
		opt(o)
	}
	api, err := newAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(cfg.Auth, o.env)
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg: cfg, api: api, auth: auth, log: o.log.With("root_source", SourceName),
		now: o.now, sleep: o.sleep, crlMemory: o.crlMemory,
		rootPin: config.NormalizeFingerprint(cfg.ExpectedRootFingerprint),
	}
	s.signPath = cfg.Mount + "/root/sign-intermediate"
	if cfg.IssuerRef != "" {
		s.signPath = cfg.Mount + "/issuer/" + cfg.IssuerRef + "/sign-intermediate"
	}
	err = s.validate(ctx)
	deferred := err != nil && o.deferValidation && errors.Is(err, ErrUnavailable)
	if err != nil && !deferred {
		if errors.Is(err, ErrUnavailable) {
			return nil, fmt.Errorf("root.vault.address: cannot use Vault at %s: %w", cfg.Address, err)
		}
		return nil, err
	}
	if o.reg != nil {
		if err := o.reg.Register(&collector{s: s}); err != nil {
			return nil, fmt.Errorf("register vault root source metrics: %w", err)
		}
	}
	if deferred {
		s.up.Store(false)
		s.pending.Store(&err)
		s.log.Warn("Vault is unavailable at start-up; its checks (login, root, sign-intermediate policy, CRL) are deferred until it answers, and meshca mints no intermediate until then",
			"address", cfg.Address, "mount", cfg.Mount, "error", err)
		return s, nil
	}
	s.validated.Store(true)
	s.up.Store(true)
	s.log.Info("vault root source ready", "address", cfg.Address, "mount", cfg.Mount,
		"issuer_ref", cfg.IssuerRef, "auth_method", auth.method(), "root", s.trust.Load().roots[0].Subject.String())
	return s, nil
}

// validate logs in and checks the mount, the root, the policy and the CRL.
func (s *Source) validate(ctx context.Context) error {
	if err := s.login(ctx); err != nil {
		return err
	}
	if _, err := s.fetchRoots(ctx); err != nil {
		return err
	}
	if err := s.checkSignPolicy(ctx); err != nil {
		return err
	}
	if _, err := s.fetchCRL(ctx); err != nil {
		return fmt.Errorf("%w (meshca needs the root's CRL for Istio's ca-crl.pem)", err)
	}
	return nil
}

// Run runs the background loops (health, token renewal, CRL refresh)
// until ctx ends, then returns once they have all stopped.
func (s *Source) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){s.RunHealth, s.RunTokenRenewal, s.RunCRLRefresh} {
		wg.Go(func() { loop(ctx) })
	}
	wg.Wait()
}

// Up reports whether the last contact with Vault succeeded (and, for a
// source opened WithDeferredValidation, its checks have completed).
func (s *Source) Up() bool { return s.up.Load() }

// Validated reports whether New's checks of Vault's setup have completed:
// always true unless New deferred them because Vault was unavailable.
func (s *Source) Validated() bool { return s.validated.Load() }

// notValidated is the error of calls made before the deferred validation
// completed; it names the last reason.
func (s *Source) notValidated(op string) error {
	var why error = errors.New("not yet validated")
	if p := s.pending.Load(); p != nil {
		why = *p
	}
	if errors.Is(why, ErrUnavailable) {
		return fmt.Errorf("root.vault.address: cannot use Vault at %s (%s: its checks have not completed since start-up): %w", s.cfg.Address, op, why)
	}
	// Vault answers but its setup is wrong: still unavailable to meshca.
	return fmt.Errorf("root.vault: %s: the checks of Vault's setup have not passed since start-up (%w): %w", op, ErrUnavailable, why)
}

// completeValidation runs New's checks for a source whose validation was
// deferred. On success the source is validated; the caller marks it up.
func (s *Source) completeValidation(ctx context.Context) error {
	s.validateMu.Lock()
	defer s.validateMu.Unlock()
	if s.validated.Load() {
		return nil
	}
	if err := s.validate(ctx); err != nil {
		s.pending.Store(&err)
		if !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
			s.log.Error("Vault answers again but its setup is wrong; meshca keeps signing with its current intermediate and retries", "error", err)
		}
		return err
	}
	s.validated.Store(true)
	s.pending.Store(nil)
	s.log.Info("vault root source validated after a start-up outage", "address", s.cfg.Address, "mount", s.cfg.Mount,
		"root", s.trust.Load().roots[0].Subject.String())
	s.checkExpectedRoots()
	return nil
}

// ExpectRoots records the roots meshca signs under without Vault (those of
// a stored generation, while Vault is unavailable). When Vault's roots,
// once fetched, do not include them, an error is logged: meshca does not
// switch roots silently.
func (s *Source) ExpectRoots(roots []*x509.Certificate) {
	roots = append([]*x509.Certificate(nil), roots...)
	s.expectRoots.Store(&roots)
	if s.validated.Load() {
		s.checkExpectedRoots()
	}
}

func (s *Source) checkExpectedRoots() {
	p, t := s.expectRoots.Load(), s.trust.Load()
	if p == nil || t == nil {
		return
	}
	for _, want := range *p {
		if !containsCert(t.roots, want) {
			s.log.Error("Vault's root no longer matches the root of the stored intermediate meshca signs with; meshca does not switch roots on its own: keep it until a deliberate rotation, or restore the root in Vault",
				"stored_root", want.Subject.String(), "stored_root_sha256", Fingerprint(want),
				"vault_root", t.roots[0].Subject.String(), "vault_root_sha256", Fingerprint(t.roots[0]))
			return
		}
	}
}

// LastSuccess is when a call to Vault last succeeded.
func (s *Source) LastSuccess() time.Time {
	if n := s.lastSuccess.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (s *Source) markUp() {
	if !s.validated.Load() { // not up until the deferred checks complete
		s.lastSuccess.Store(s.now().UnixNano())
		return
	}
	if !s.up.Swap(true) && s.lastSuccess.Load() != 0 {
		s.log.Info("vault root source is up again")
	}
	s.lastSuccess.Store(s.now().UnixNano())
}

func (s *Source) markDown(err error) {
	s.lastErr.Store(&err)
	if s.up.Swap(false) {
		s.log.Warn("vault root source is down; meshca keeps issuing with its current intermediate", "error", err)
	}
}

// retryBackoff is the delay between retries while Vault fails: a base d
// that doubles from InitialBackoff up to MaxBackoff, jittered to [d/2, d).
// Each failure streak takes a fresh DelayFunc from it.
func (s *Source) retryBackoff() wait.Backoff {
	return wait.Backoff{
		Duration: s.cfg.InitialBackoff.Duration / 2,
		Factor:   2,
		Jitter:   1, // [Duration, 2*Duration)
		Steps:    math.MaxInt32,
		Cap:      s.cfg.MaxBackoff.Duration / 2,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
