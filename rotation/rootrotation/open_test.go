package rootrotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
)

// served is meshca opened through Open on real parts (softkms keys, a
// bbolt store, Catalyst file roots made as meshca init makes them) with
// the real intermediate manager; it records the changes the manager
// publishes, as the trust publisher gets them.
type served struct {
	t    *testing.T
	cfg  *config.Config
	clk  *clocktesting.FakeClock
	rt   *authority.Runtime
	m    *intermediate.Manager
	ctl  *Controller
	bCfg config.RootConfig

	mu      sync.Mutex
	changes []rotation.Change
}

func createDevRoot(t *testing.T, cfg *config.Config, name string, now time.Time) {
	t.Helper()
	_, err := authority.CreateRoot(context.Background(), cfg, authority.RootRequest{
		CommonName: name, Organization: "meshca", Lifetime: 10 * 365 * 24 * time.Hour, KeyAlgorithm: keys.ECP256, Now: now.Add(-time.Hour),
	})
	require.NoError(t, err)
}

// caDirs makes A's CA directory (a development CA as meshca init makes
// it) and B's root in another directory.
func caDirs(t *testing.T) (aDir, bDir string) {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	aDir, bDir = t.TempDir(), t.TempDir()
	cfg := config.Defaults(aDir)
	createDevRoot(t, cfg, "root A", now)
	bc := config.Defaults(bDir)
	bc.KeyStore = cfg.KeyStore
	createDevRoot(t, bc, "root B", now)
	return aDir, bDir
}

func newServed(t *testing.T) *served {
	t.Helper()
	a, b := caDirs(t)
	return openServed(t, a, b)
}

func openServed(t *testing.T, aDir, bDir string) *served {
	t.Helper()
	s := &served{t: t, cfg: config.Defaults(aDir), clk: clocktesting.NewFakeClock(time.Now().Truncate(time.Second)), bCfg: config.Defaults(bDir).Root}
	s.open()
	return s
}

func (s *served) open() {
	s.t.Helper()
	var err error
	s.rt, s.m, s.ctl, err = Open(context.Background(), s.cfg, s.clk, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(s.t, err)
	s.m.Subscribe(func(_ context.Context, c rotation.Change) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.changes = append(s.changes, c)
		return nil
	})
	s.t.Cleanup(func() { _ = s.rt.Close() })
}

// crash closes everything without a word to the controller.
func (s *served) crash() {
	require.NoError(s.t, s.rt.Close())
	s.open()
}

func (s *served) rootsPEM() []byte { return []byte(s.m.Active().RootsPEM()) }

// step moves the clock a little (key files are named by the time) and
// evaluates the rotation once.
func (s *served) step() {
	s.clk.Step(time.Second)
	s.ctl.Step(context.Background())
}

func (s *served) phase() Phase {
	r, err := s.rt.Store.(store.RootRotations).GetRootRotation(context.Background())
	require.NoError(s.t, err)
	return Phase(r.Phase)
}

func readRoot(t *testing.T, rc config.RootConfig) *x509.Certificate {
	c, err := root.ReadCertificates(rc.File.RootCert)
	require.NoError(t, err)
	return c[0]
}

// The real intermediate manager under the composite source: A -> A+B -> B
// with Catalyst roots, the published bytes, the chain, the PQ anchors,
// and a restart after the end that keeps B although the configuration
// names A.
func TestOpen_RealManagerRotatesTheRoot(t *testing.T) {
	s := newServed(t)
	ctx := context.Background()
	a, b := readRoot(t, s.cfg.Root), readRoot(t, s.bCfg)
	before := s.rootsPEM()
	samePEM(t, root.EncodePEM(a), before, "")
	gen1 := s.m.Active()
	require.Len(t, gen1.PQAnchors(), 1, "A's Catalyst key")

	_, err := s.ctl.Start(ctx, StartRequest{NewRoot: s.bCfg, By: "test"})
	require.NoError(t, err)
	s.step()
	require.Equal(t, PhaseWaitWorkloads, s.phase())
	both := s.rootsPEM()
	samePEM(t, append(append([]byte(nil), before...), root.EncodePEM(b)...), both, "B's bytes appended to A's")
	require.Equal(t, gen1.Generation, s.m.Active().Generation, "same intermediate")
	require.Len(t, s.m.Active().PQAnchors(), 2, "A's and B's Catalyst keys")
	last := s.changes[len(s.changes)-1]
	require.Equal(t, rotation.ReasonRoots, last.Reason)

	_, err = s.ctl.Advance(ctx, "test")
	require.NoError(t, err)
	s.step()
	require.Equal(t, PhaseDone, s.phase(), "no leaf under A: phases 3 to 5 at once; %s", s.ctl.RotationStatus().Problem)
	gen2 := s.m.Active()
	require.NotEqual(t, gen1.Generation, gen2.Generation)
	require.NoError(t, gen2.Bundle.Cert.CheckSignatureFrom(b))
	final := s.rootsPEM()
	samePEM(t, root.EncodePEM(b), final, "")
	require.True(t, bytes.Contains(both, final))
	require.Len(t, s.m.Active().PQAnchors(), 1)
	chain := s.m.Active().Bundle.Chain()
	require.True(t, chain[len(chain)-1].Equal(b))

	// A restart with the configuration still naming A: B stays.
	s.crash()
	require.Equal(t, gen2.Generation, s.m.Active().Generation, "no new intermediate")
	samePEM(t, final, s.rootsPEM(), "")
	require.Contains(t, s.ctl.RotationStatus().Waiting, "root.file.rootCert "+s.bCfg.File.RootCert)
	rc, _, err := s.rt.Root.(root.RootKeyHolder).SigningRoot()
	require.NoError(t, err)
	require.True(t, rc.Equal(b), "the root CRL is B's")

	// And with the configuration naming B, it is taken as it is.
	s.cfg.Root = s.bCfg
	s.crash()
	require.Equal(t, gen2.Generation, s.m.Active().Generation)
	samePEM(t, final, s.rootsPEM(), "")
	require.Empty(t, s.ctl.RotationStatus().Waiting)
}

// A crash right after each phase is journaled (before it acts) resumes
// it: the roots and intermediate are as the phase says, and the switch
// makes exactly one intermediate under B.
func TestOpen_ResumesEveryPhaseAfterACrash(t *testing.T) {
	s := newServed(t)
	ctx := context.Background()
	a, b := readRoot(t, s.cfg.Root), readRoot(t, s.bCfg)
	require.NoError(t, s.rt.Store.PutIssuance(ctx, store.Issuance{Serial: "0a", Identity: "spiffe://cluster.local/ns/a/sa/a", NotBefore: s.clk.Now(),
		NotAfter: s.clk.Now().Add(time.Hour), Fingerprint: "0a", Generation: s.m.Active().Generation, IssuedAt: s.clk.Now()}))
	_, err := s.ctl.Start(ctx, StartRequest{NewRoot: s.bCfg, By: "test"})
	require.NoError(t, err)

	// Phase 1 journaled, nothing published: after the crash the manager
	// starts under A+B and the phase publishes.
	s.crash()
	samePEM(t, root.EncodePEM(a, b), s.rootsPEM(), "")
	s.step()
	require.Equal(t, PhaseWaitWorkloads, s.phase())

	// Phase 3 journaled, not acted on.
	_, err = s.ctl.Advance(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, PhaseSwitch, s.phase())
	s.crash()
	require.NoError(t, s.m.Active().Bundle.Cert.CheckSignatureFrom(a), "still under A")
	s.step()
	require.Equal(t, PhaseWaitTTL, s.phase(), "leaf 0a under A is unexpired")
	require.NoError(t, s.m.Active().Bundle.Cert.CheckSignatureFrom(b))
	underB := s.m.Active().Generation

	// The switch done but not journaled: no second intermediate.
	s.crash()
	require.Equal(t, underB, s.m.Active().Generation)

	// Phase 5 journaled, not acted on: after the crash the manager starts
	// with B alone, and the phase completes.
	_, err = s.ctl.Advance(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, PhaseRemove, s.phase())
	s.crash()
	samePEM(t, root.EncodePEM(b), s.rootsPEM(), "")
	s.step()
	require.Equal(t, PhaseDone, s.phase())
	require.Equal(t, underB, s.m.Active().Generation)
	gens, err := s.rt.Store.ListGenerations(ctx)
	require.NoError(t, err)
	n := 0
	for _, g := range gens {
		c, err := x509.ParseCertificate(g.CertDER)
		require.NoError(t, err)
		if c.CheckSignatureFrom(b) == nil {
			n++
		}
	}
	require.Equal(t, 1, n, "one intermediate under B")
	_ = filepath.Join
}

// samePEM compares bundles without printing them.
func samePEM(t *testing.T, want, got []byte, msg string) {
	t.Helper()
	if !bytes.Equal(want, got) {
		wc, _ := root.ParseCertificates(want)
		gc, _ := root.ParseCertificates(got)
		var ws, gs []string
		for _, c := range wc {
			ws = append(ws, c.Subject.CommonName)
		}
		for _, c := range gc {
			gs = append(gs, c.Subject.CommonName)
		}
		t.Fatalf("%s: bundles differ: want %d bytes %v, got %d bytes %v", msg, len(want), ws, len(got), gs)
	}
}

// rotation.root sets a rotation's default waits; the maximum of the
// workloads' wait derives from the minimum in force.
func TestOpen_ConfiguredWaits(t *testing.T) {
	aDir, bDir := caDirs(t)
	s := &served{t: t, cfg: config.Defaults(aDir), clk: clocktesting.NewFakeClock(time.Now().Truncate(time.Second)), bCfg: config.Defaults(bDir).Root}
	s.cfg.Rotation.Root.WorkloadsMinWait.Duration = time.Minute
	s.cfg.Rotation.Root.TTLMaxWait.Duration = 3 * time.Hour
	s.open()
	_, err := s.ctl.Start(context.Background(), StartRequest{NewRoot: s.bCfg, By: "test", Waits: store.RootRotationWaits{TTLMax: 5 * time.Hour}})
	require.NoError(t, err)
	r, err := s.rt.Store.(store.RootRotations).GetRootRotation(context.Background())
	require.NoError(t, err)
	require.Equal(t, store.RootRotationWaits{WorkloadsMin: time.Minute, WorkloadsMax: 12*time.Hour + time.Minute, TTLMax: 5 * time.Hour}, r.Waits,
		"configured minimum, derived maximum, the request's TTL wait")
}
