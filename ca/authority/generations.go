package authority

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

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

// Loader turns configuration into signing material: it reuses the active
// generation recorded in the store when it is still good, and otherwise
// has the root source mint a new one (or registers a pre-issued one), for
// the configured profile (intermediate.profile). It publishes the
// post-quantum trust anchor of the result as pq-anchor.pem. LoadActive is
// its read-only form, for the offline commands.
type Loader struct {
	Config *config.Config
	Keys   *keys.Manager
	Store  store.Generations
	Log    *slog.Logger
	Now    func() time.Time
	// Root is the root source that mints the intermediates
	// (NewRootSource).
	Root root.Source
}

func (l *Loader) now() time.Time {
	if l.Now != nil {
		return l.Now()
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

// Load returns the material to sign with: the active generation when it
// is still good, otherwise a new intermediate that the root source mints
// and that is recorded and activated.
func (l *Loader) Load(ctx context.Context) (*Material, error) {
	m, err := l.load(ctx, true)
	if err != nil {
		return nil, err
	}
	return m, l.publishPQAnchor(m)
}

// LoadActive returns the material of the active generation, read-only: it
// never mints, records or activates a generation and writes no file. It
// fails, saying what to run, when there is no active generation that is
// good to sign with: none yet, expired, past its rotation threshold, or
// not matching the configuration.
func (l *Loader) LoadActive(ctx context.Context) (*Material, error) {
	return l.load(ctx, false)
}

func (l *Loader) load(ctx context.Context, mint bool) (*Material, error) {
	if p, ok := l.Root.(root.PreIssuedSource); ok {
		return l.loadPreIssued(ctx, p, mint)
	}
	roots, err := l.Root.Roots(ctx)
	if errors.Is(err, root.ErrUnavailable) {
		return l.loadStored(ctx, err, mint)
	}
	if err != nil {
		return nil, err
	}
	m, stale, err := l.reuseActive(ctx, roots)
	if err != nil || m != nil {
		return m, err
	}
	if !mint {
		return nil, readOnlyError(stale)
	}
	if stale.generation != 0 {
		l.log().Info(stale.msg+"; minting a new one", stale.attrs()...)
	}
	return l.mint(ctx, roots)
}

// notReusable is why the active generation cannot sign on.
type notReusable struct {
	msg        string
	generation uint64 // 0: there is no active generation
	args       []any  // further key/value pairs
}

func (r notReusable) attrs() []any {
	return append([]any{"generation", r.generation}, r.args...)
}

// readOnlyError is the error of LoadActive: what is wrong, and what to run.
func readOnlyError(r notReusable) error {
	what := r.msg
	if r.generation != 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%s (generation %d", r.msg, r.generation)
		for i := 0; i+1 < len(r.args); i += 2 {
			fmt.Fprintf(&b, ", %v %v", r.args[i], r.args[i+1])
		}
		what = b.String() + ")"
	}
	return fmt.Errorf("%w: %s; this command opens the CA read-only and never mints or activates an intermediate: run 'meshca serve' on this configuration, which mints and activates one (or 'meshca init' for a new development CA), then run it again", ErrNoActiveGeneration, what)
}

// ErrNoActiveGeneration is matched by the errors of LoadActive (and
// OpenReadOnly) when the store holds no active generation that is good to
// sign with.
var ErrNoActiveGeneration = errors.New("no usable active CA generation")

// profileOf is a generation's profile; records from before profiles are
// classical.
func profileOf(g store.Generation) profile.Name {
	if g.Profile == "" {
		return profile.Classical
	}
	return profile.Name(g.Profile)
}

// reuseActive returns the active generation of the root source's kind if
// it was minted for the configured profile and post-quantum algorithm,
// chains to one of roots (classically and, under a Catalyst root, through
// its alternative signature too), its keys load and it has not passed the
// rotation threshold; otherwise nil and why not.
func (l *Loader) reuseActive(ctx context.Context, roots []*x509.Certificate) (*Material, notReusable, error) {
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, notReusable{}, fmt.Errorf("read CA generations: %w", err)
	}
	kind := l.Root.Kind()
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if !g.Active() || g.Source != kind {
			continue
		}
		if p := profileOf(g); p != l.profile() {
			return nil, notReusable{msg: "intermediate.profile changed", generation: g.ID, args: []any{"was", p, "now", l.profile()}}, nil
		}
		cert, err := x509.ParseCertificate(g.CertDER)
		if err != nil {
			return nil, notReusable{}, fmt.Errorf("CA generation %d: stored certificate does not parse: %w", g.ID, err)
		}
		b := &root.Bundle{Cert: cert, Roots: roots}
		now := l.now()
		if err := b.Verify(now); err != nil {
			return nil, notReusable{msg: "active intermediate no longer chains to the configured root", generation: g.ID, args: []any{"error", err}}, nil
		}
		if l.profile() == profile.Catalyst && hasAltKey(roots[0]) {
			if err := b.VerifyPQ(mustAnchor(roots[0])); err != nil {
				return nil, notReusable{msg: "active intermediate has no alternative signature from the Catalyst root", generation: g.ID, args: []any{"error", err}}, nil
			}
		}
		if due := RenewalTime(cert, l.Config.Intermediate.RotationThreshold); !now.Before(due) {
			return nil, notReusable{msg: "active intermediate passed its rotation threshold", generation: g.ID, args: []any{"renewal_due", due}}, nil
		}
		key, err := l.generationKey(g, cert)
		if err != nil {
			return nil, notReusable{}, err
		}
		if alg := pqAlgorithmOf(key, l.profile()); alg != l.Config.Intermediate.PQAlgorithm {
			return nil, notReusable{msg: "intermediate.pqAlgorithm changed", generation: g.ID, args: []any{"was", alg, "now", l.Config.Intermediate.PQAlgorithm}}, nil
		}
		m, err := NewMaterial(g.ID, b, key, l.profile())
		if err != nil {
			return nil, notReusable{}, fmt.Errorf("CA generation %d: %w", g.ID, err)
		}
		return m, notReusable{}, nil
	}
	return nil, notReusable{msg: fmt.Sprintf("the store holds no active CA generation from root source %q", kind)}, nil
}

// hasAltKey reports whether a root carries an ML-DSA alternative public
// key (a Catalyst root, X.509 clause 9.8).
func hasAltKey(c *x509.Certificate) bool {
	alt, err := root.AltPublicKeyInfo(c)
	return err == nil && alt != nil
}

// mustAnchor trusts a root's post-quantum key; a root without one yields
// an anchor that verifies nothing.
func mustAnchor(c *x509.Certificate) pqc.TrustAnchor {
	a, _ := pqc.AnchorFromCertificate(c)
	return a
}

// generationKey loads a generation's keys and checks them against cert.
func (l *Loader) generationKey(g store.Generation, cert *x509.Certificate) (root.CAKey, error) {
	signer, err := l.Keys.Signer(g.KeyRef)
	if err != nil {
		return root.CAKey{}, fmt.Errorf("CA generation %d: %w", g.ID, err)
	}
	if err := root.CheckKeyMatches(cert, signer); err != nil {
		return root.CAKey{}, fmt.Errorf("CA generation %d key %s: %w", g.ID, g.KeyRef, err)
	}
	key := root.CAKey{Signer: signer}
	if profileOf(g) == profile.Catalyst {
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

// pqAlgorithmOf names the post-quantum key of a CA of profile p ("" for
// classical): the catalyst ML-DSA key, or the composite/ML-DSA signer.
func pqAlgorithmOf(key root.CAKey, p profile.Name) string {
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

// RenewalTime is when an intermediate should be replaced: after threshold
// of its lifetime has elapsed.
func RenewalTime(c *x509.Certificate, threshold float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * threshold))
}

func (l *Loader) record(ctx context.Context, b *root.Bundle, keyRef, altKeyRef, source string, now time.Time) (store.Generation, error) {
	var chain [][]byte
	for _, c := range b.Chain()[1:] {
		chain = append(chain, c.Raw)
	}
	g, err := l.Store.AddGeneration(ctx, store.Generation{
		CertDER: b.Cert.Raw, ChainDER: chain, KeyRef: keyRef, AltKeyRef: altKeyRef,
		Profile: string(l.profile()), Source: source,
		Fingerprint: Fingerprint(b.Cert), CreatedAt: now.UTC(),
	})
	if err != nil {
		return g, fmt.Errorf("record CA generation: %w", err)
	}
	if err := l.Store.ActivateGeneration(ctx, g.ID, now.UTC()); err != nil {
		return g, fmt.Errorf("activate CA generation %d: %w", g.ID, err)
	}
	return g, nil
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
