package authority

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// Generation sources, as recorded in the store.
const (
	SourceFileMinted  = root.KindFileMinted
	SourceFileCACerts = root.KindFileCACerts
)

// Loader reads CA generations into signing material, read-only: it never
// mints, records or activates a generation and writes no file. The
// offline commands (OpenReadOnly) and the intermediate rotation manager
// (rotation/intermediate), which decides, mints and activates, share it.
type Loader struct {
	Config *config.Config
	Keys   *keys.Manager
	Store  store.Generations
	Log    *slog.Logger
	// Clock is the clock (default the real one).
	Clock clock.PassiveClock
	// Root is the root source (NewRootSource, or a wrapper of it).
	Root root.Source
	// Signer is the signer lineage whose generations the Loader loads
	// (store.Generation.Signer); store.DefaultSigner ("") for the default
	// signer.
	Signer string
}

// Now is the Loader's clock.
func (l *Loader) Now() time.Time {
	if l.Clock != nil {
		return l.Clock.Now()
	}
	return time.Now()
}

func (l *Loader) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.Default()
}

func (l *Loader) profile() profile.Name { return l.Config.Intermediate.Profile }

// LoadActive returns the material of the active generation for the
// offline commands: it fails, saying what to run, when there is no active
// generation that is good to sign with: none yet, expired, past its
// activation threshold (intermediate.activateThreshold), or not matching
// the configuration.
func (l *Loader) LoadActive(ctx context.Context) (*Material, error) {
	m, err := l.ActiveMaterial(ctx, l.Config.Intermediate.ActivateThreshold)
	var u *UnusableError
	if errors.As(err, &u) {
		return nil, readOnlyError(u)
	}
	return m, err
}

// ActiveMaterial is the one read-only load of the active generation: the
// active generation of the root source's kind, minted for the configured
// profile and post-quantum algorithm, chaining to one of the source's
// roots (classically and, under a Catalyst root, through its alternative
// signature too), with keys that load and match. While the root source is
// unavailable it falls back on the stored chain (see loadStored). For a
// pre-issued source it is the recorded generation of the intermediate in
// root.file.cacertsDir. With threshold > 0 a generation past that
// fraction of its lifetime is refused too. When no generation qualifies
// the error is an *UnusableError (matching ErrNoActiveGeneration).
func (l *Loader) ActiveMaterial(ctx context.Context, threshold float64) (*Material, error) {
	if p, ok := l.Root.(root.PreIssuedSource); ok {
		m, unrecorded, err := l.PreIssued(ctx, p, false)
		if err == nil && unrecorded != nil {
			err = &UnusableError{Msg: fmt.Sprintf("the pre-issued intermediate %q in root.file.cacertsDir is not the active CA generation for intermediate.profile %s", m.Bundle.Cert.Subject, l.profile())}
		}
		return m, err
	}
	roots, err := l.Root.Roots(ctx)
	if errors.Is(err, root.ErrUnavailable) {
		return l.loadStored(ctx, err, threshold)
	}
	if err != nil {
		return nil, err
	}
	g, err := l.activeGeneration(ctx)
	if err != nil {
		return nil, err
	}
	m, err := l.GenerationMaterial(*g, roots)
	if err != nil {
		return nil, err
	}
	if err := l.checkNotRevoked(ctx, g.ID, m.Bundle.Cert); err != nil {
		return nil, err
	}
	if threshold > 0 {
		if due := RenewalTime(m.Bundle.Cert, threshold); !l.Now().Before(due) {
			return nil, &UnusableError{Msg: "active intermediate passed its activation threshold", Generation: g.ID, Args: []any{"renewal_due", due}}
		}
	}
	return m, nil
}

// CheckStillUnrevoked is the check a running replica makes of the
// intermediate it signs with, m: an *UnusableError when the store now
// records it as revoked. Another replica (with another configuration) may
// have revoked it since it was loaded.
func (l *Loader) CheckStillUnrevoked(ctx context.Context, m *Material) error {
	return l.checkNotRevoked(ctx, m.Generation, m.Bundle.Cert)
}

// checkNotRevoked is an *UnusableError when the store records cert, the
// intermediate of generation gen, as revoked (revocationOf).
func (l *Loader) checkNotRevoked(ctx context.Context, gen uint64, cert *x509.Certificate) error {
	rev, err := l.revocationOf(ctx, cert, gen)
	switch {
	case err != nil:
		return fmt.Errorf("CA generation %d: read its revocation: %w", gen, err)
	case rev != nil:
		return &UnusableError{Msg: "the active intermediate is revoked", Generation: gen, Args: []any{"revoked_as_generation", rev.Generation}}
	}
	return nil
}

// revocationOf is the store's revocation of the CA certificate cert, or
// nil: recorded for generation gen, or for another record of the same
// certificate (one certificate recorded twice). A leaf's revocation under
// the same serial is another certificate: serials are unique per issuer
// (RFC 5280 section 4.1.2.2), not across a root's CAs. A serial the store
// cannot hold (0, or over 20 octets: ErrInvalid) was never revoked in it.
func (l *Loader) revocationOf(ctx context.Context, cert *x509.Certificate, gen uint64) (*store.Revocation, error) {
	revs, ok := l.Store.(store.Revocations)
	if !ok {
		return nil, nil
	}
	rev, err := revs.GetRevocation(ctx, hex.EncodeToString(cert.SerialNumber.Bytes()))
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return nil, nil
	case err != nil:
		return nil, err
	case rev.Kind != store.KindIntermediate:
		return nil, nil
	case gen != 0 && rev.Generation == gen:
		return &rev, nil
	}
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	for _, g := range gens {
		if g.ID == rev.Generation && bytes.Equal(g.CertDER, cert.Raw) {
			return &rev, nil
		}
	}
	return nil, nil
}

// activeGeneration is the store's active generation of the root source's
// kind, or an *UnusableError.
func (l *Loader) activeGeneration(ctx context.Context) (*store.Generation, error) {
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	kind := l.Root.Kind()
	for i := len(gens) - 1; i >= 0; i-- {
		if gens[i].Active() && gens[i].Source == kind && gens[i].Lineage() == l.Signer {
			return &gens[i], nil
		}
	}
	return nil, &UnusableError{Msg: fmt.Sprintf("the store holds no active CA generation from root source %q", kind)}
}

// GenerationMaterial builds the material of generation g (in whatever
// state) under roots, to sign with: its certificate and stored
// intermediates, which must chain to one of roots now (and, for a catalyst
// CA under a Catalyst root, carry that root's alternative signature), with
// its keys. A generation that does not match the configured profile or
// post-quantum algorithm, or that does not chain, is an *UnusableError;
// keys that do not load are a plain error.
func (l *Loader) GenerationMaterial(g store.Generation, roots []*x509.Certificate) (*Material, error) {
	return l.generationMaterial(g, roots, true)
}

// RetainedMaterial is GenerationMaterial for a retired generation that is
// still published: it is loaded under its own profile and post-quantum
// algorithm, whatever the configuration says now, because its leaves are
// in use and its CRL must stay served (RFC 5280 section 5) after
// intermediate.profile changed.
func (l *Loader) RetainedMaterial(g store.Generation, roots []*x509.Certificate) (*Material, error) {
	return l.generationMaterial(g, roots, false)
}

func (l *Loader) generationMaterial(g store.Generation, roots []*x509.Certificate, matchConfig bool) (*Material, error) {
	p := ProfileOf(g)
	if matchConfig && p != l.profile() {
		return nil, &UnusableError{Msg: "intermediate.profile changed", Generation: g.ID, Args: []any{"was", p, "now", l.profile()}}
	}
	cert, err := x509.ParseCertificate(g.CertDER)
	if err != nil {
		return nil, fmt.Errorf("CA generation %d: stored certificate does not parse: %w", g.ID, err)
	}
	var inters []*x509.Certificate
	for i, der := range g.ChainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("CA generation %d: stored chain certificate %d does not parse: %w", g.ID, i, err)
		}
		inters = append(inters, c)
	}
	inters, _ = root.SplitChain(inters)
	b := &root.Bundle{Cert: cert, Intermediates: inters, Roots: roots}
	if err := b.Verify(l.Now()); err != nil {
		return nil, &UnusableError{Msg: "the intermediate no longer chains to the configured root", Generation: g.ID, Args: []any{"error", err}}
	}
	if err := CheckCatalystRoot(b, p); err != nil {
		return nil, &UnusableError{Msg: "the intermediate has no alternative signature from the Catalyst root", Generation: g.ID, Args: []any{"error", err}}
	}
	key, err := l.GenerationKey(g, cert)
	if err != nil {
		return nil, err
	}
	if alg := PQAlgorithmOf(key, p); matchConfig && alg != l.Config.Intermediate.PQAlgorithm {
		return nil, &UnusableError{Msg: "intermediate.pqAlgorithm changed", Generation: g.ID, Args: []any{"was", alg, "now", l.Config.Intermediate.PQAlgorithm}}
	}
	m, err := NewMaterial(g.ID, b, key, p)
	if err != nil {
		return nil, fmt.Errorf("CA generation %d: %w", g.ID, err)
	}
	return m, nil
}

// IssuingRoot is the root among b.Roots that b's chain ends at (during a
// root rotation there are two roots, and the intermediate chains to one
// of them, not necessarily the first); nil if none.
func IssuingRoot(b *root.Bundle) *x509.Certificate {
	chain := b.Chain()
	top := chain[len(chain)-1]
	for _, r := range b.Roots {
		if r.Equal(top) {
			return r
		}
	}
	return nil
}

// CheckCatalystRoot checks, for a catalyst CA whose issuing root is a
// Catalyst root (it carries an ML-DSA alternative public key, X.509
// clause 9.8), that the chain's alternative signatures verify up to it.
func CheckCatalystRoot(b *root.Bundle, p profile.Name) error {
	if p != profile.Catalyst {
		return nil
	}
	r := IssuingRoot(b)
	if r == nil || !hasAltKey(r) {
		return nil
	}
	a, err := pqc.AnchorFromCertificate(r)
	if err == nil {
		err = b.VerifyPQ(a)
	}
	return err
}

// UnusableError says why a generation cannot sign: the configuration
// changed, it does not chain, it passed its threshold, or there is none.
// It matches ErrNoActiveGeneration.
type UnusableError struct {
	Msg        string
	Generation uint64 // 0: no particular generation
	Args       []any  // further key/value pairs
}

func (e *UnusableError) Error() string {
	if e.Generation == 0 {
		return e.Msg
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (generation %d", e.Msg, e.Generation)
	for i := 0; i+1 < len(e.Args); i += 2 {
		fmt.Fprintf(&b, ", %v %v", e.Args[i], e.Args[i+1])
	}
	return b.String() + ")"
}

// Is makes errors.Is(err, ErrNoActiveGeneration) true.
func (e *UnusableError) Is(target error) bool { return target == ErrNoActiveGeneration }

// Attrs are the error's log attributes.
func (e *UnusableError) Attrs() []any {
	return append([]any{"generation", e.Generation, "reason", e.Msg}, e.Args...)
}

// readOnlyError is the error of LoadActive: what is wrong, and what to run.
func readOnlyError(u *UnusableError) error {
	return fmt.Errorf("%w: %s; this command opens the CA read-only and never mints or activates an intermediate: run 'meshca serve' on this configuration, which mints and activates one (or 'meshca init' for a new development CA), then run it again", ErrNoActiveGeneration, u.Error())
}

// ErrNoActiveGeneration is matched by the errors of ActiveMaterial,
// LoadActive (and OpenReadOnly) when the store holds no active generation
// that is good to sign with.
var ErrNoActiveGeneration = errors.New("no usable active CA generation")

// ProfileOf is a generation's profile; records from before profiles are
// classical.
func ProfileOf(g store.Generation) profile.Name {
	if g.Profile == "" {
		return profile.Classical
	}
	return profile.Name(g.Profile)
}

// hasAltKey reports whether a root carries an ML-DSA alternative public
// key (a Catalyst root, X.509 clause 9.8).
func hasAltKey(c *x509.Certificate) bool {
	alt, err := root.AltPublicKeyInfo(c)
	return err == nil && alt != nil
}

// GenerationKey loads a generation's keys and checks them against cert.
func (l *Loader) GenerationKey(g store.Generation, cert *x509.Certificate) (root.CAKey, error) {
	signer, err := l.Keys.Signer(g.KeyRef)
	if err != nil {
		return root.CAKey{}, fmt.Errorf("CA generation %d: %w", g.ID, err)
	}
	if err := root.CheckKeyMatches(cert, signer); err != nil {
		return root.CAKey{}, fmt.Errorf("CA generation %d key %s: %w", g.ID, g.KeyRef, err)
	}
	key := root.CAKey{Signer: signer}
	if ProfileOf(g) == profile.Catalyst {
		if g.AltKeyRef == "" {
			return root.CAKey{}, fmt.Errorf("CA generation %d is catalyst but records no ML-DSA key (altKeyRef)", g.ID)
		}
		if key.Alt, err = l.Keys.LoadPQ(g.AltKeyRef); err != nil {
			return root.CAKey{}, fmt.Errorf("CA generation %d: %w", g.ID, err)
		}
		if alt, _ := root.AltPublicKeyInfo(cert); alt != nil {
			if err := root.CheckAltKeyMatches(cert, key.Alt); err != nil {
				return root.CAKey{}, fmt.Errorf("CA generation %d key %s: %w", g.ID, g.AltKeyRef, err)
			}
		}
	}
	return key, nil
}

// PQAlgorithmOf names the post-quantum key of a CA of profile p ("" for
// classical): the catalyst ML-DSA key, or the composite/ML-DSA signer.
func PQAlgorithmOf(key root.CAKey, p profile.Name) string {
	switch p {
	case profile.Catalyst:
		if key.Alt != nil {
			return keys.PQAlgorithmOf(key.Alt.Public())
		}
	case profile.Composite, profile.MLDSA:
		return keys.PQAlgorithmOf(key.Signer.Public())
	}
	return ""
}

// RenewalTime is when threshold of an intermediate's lifetime has elapsed.
func RenewalTime(c *x509.Certificate, threshold float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * threshold))
}

// NewGenerationRecord is the store record of a new generation for bundle
// b (not yet added: the caller adds it, prepared).
func NewGenerationRecord(b *root.Bundle, keyRef, altKeyRef, source string, p profile.Name, now time.Time) store.Generation {
	var chain [][]byte
	for _, c := range b.Chain()[1:] {
		chain = append(chain, c.Raw)
	}
	return store.Generation{
		CertDER: b.Cert.Raw, ChainDER: chain, KeyRef: keyRef, AltKeyRef: altKeyRef,
		Profile: string(p), Source: source, Fingerprint: Fingerprint(b.Cert), CreatedAt: now.UTC(),
	}
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
