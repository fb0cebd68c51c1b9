package intermediate

import (
	"context"
	"io"
	"log/slog"
	"os"
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
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation"
)

// lifetime is the intermediate lifetime of the tests: months, driven by a
// fake clock in milliseconds.
const lifetime = 90 * 24 * time.Hour

// t0 is the start of the fake timeline (a real date: the development
// root is valid from its creation for ten years).
var t0 = time.Now().Truncate(time.Second)

// testConfig is a development CA's configuration in dir.
func testConfig(dir string) *config.Config {
	cfg := config.Defaults(dir)
	cfg.Intermediate.Lifetime.Duration = lifetime
	return cfg
}

// createRoot writes the development root of cfg (as meshca init does).
func createRoot(t testing.TB, cfg *config.Config) {
	t.Helper()
	_, err := authority.CreateRoot(context.Background(), cfg, authority.RootRequest{
		CommonName: "test root", Organization: "meshca", Lifetime: 10 * 365 * 24 * time.Hour, KeyAlgorithm: keys.ECP256, Now: t0.Add(-time.Hour),
	})
	require.NoError(t, err)
}

// parts are the real components a Manager runs on: softkms keys, a bbolt
// store and the file root.
type parts struct {
	cfg *config.Config
	km  *keys.Manager
	st  *boltstore.Store
	src *root.FileSource
}

func openParts(t testing.TB, cfg *config.Config, clk *clocktesting.FakeClock) *parts {
	t.Helper()
	p, err := newParts(cfg, clk)
	require.NoError(t, err)
	return p
}

func newParts(cfg *config.Config, clk *clocktesting.FakeClock) (*parts, error) {
	km, err := keys.Open(context.Background(), cfg.KeyStore)
	if err != nil {
		return nil, err
	}
	st, err := boltstore.Open(cfg.Store.Path)
	if err != nil {
		km.Close()
		return nil, err
	}
	f := cfg.Root.File
	src := &root.FileSource{RootCert: f.RootCert, RootKey: f.RootKey, RootPQKey: f.RootPQKey, Profile: cfg.Intermediate.Profile, Keys: km, Clock: clk}
	return &parts{cfg: cfg, km: km, st: st, src: src}, nil
}

func (p *parts) close() {
	p.st.Close()
	p.km.Close()
}

// fixture is a Manager on real parts with a fake clock; it records the
// changes its subscriber gets.
type fixture struct {
	*parts
	clk *clocktesting.FakeClock
	m   *Manager

	mu      sync.Mutex
	changes []rotation.Change
}

func newFixture(t *testing.T, onStep func(Step, uint64)) *fixture {
	t.Helper()
	cfg := testConfig(t.TempDir())
	createRoot(t, cfg)
	clk := clocktesting.NewFakeClock(t0)
	p := openParts(t, cfg, clk)
	t.Cleanup(p.close)
	f := &fixture{parts: p, clk: clk}
	f.m = New(Options{Config: cfg, Keys: p.km, Store: p.st, Root: p.src, Clock: clk, OnStep: onStep,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.m.Subscribe(func(_ context.Context, c rotation.Change) error {
		// A subscriber may read the Manager (no deadlock), and sees the change.
		if got := f.m.Active(); got != c.Active {
			t.Errorf("Active() in a subscriber is generation %d, the change's is %d", got.Generation, c.Active.Generation)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.changes = append(f.changes, c)
		return nil
	})
	return f
}

func (f *fixture) gotChanges() []rotation.Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rotation.Change(nil), f.changes...)
}

// run starts Run and waits until it has evaluated the current time.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	f.settled(t)
}

// settled waits (polling, with a deadline) until Run has evaluated the
// fake clock's current time and sleeps on its timer again.
func (f *fixture) settled(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		return f.m.lastEval.Load() == f.clk.Now().UnixNano() && f.clk.HasWaiters()
	}, 10*time.Second, time.Millisecond, "the manager did not evaluate %s", f.clk.Now())
}

// at moves the fake clock to t and waits until the Manager has acted.
func (f *fixture) at(t *testing.T, when time.Time) {
	t.Helper()
	f.clk.SetTime(when)
	f.settled(t)
}

// states returns each generation's state and checks the invariants:
// never two active, never none once one was activated.
func states(t *testing.T, st store.Generations) map[uint64]store.GenerationState {
	t.Helper()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	out := map[uint64]store.GenerationState{}
	active := 0
	for _, g := range gens {
		out[g.ID] = g.State()
		if g.Active() {
			active++
		}
	}
	require.Equal(t, 1, active, "exactly one active generation: %v", out)
	return out
}

func generation(t *testing.T, st store.Generations, id uint64) store.Generation {
	t.Helper()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	for _, g := range gens {
		if g.ID == id {
			return g
		}
	}
	t.Fatalf("no generation %d", id)
	return store.Generation{}
}

// fraction is the point threshold of the way through mat's validity.
func fraction(mat *authority.Material, threshold float64) time.Time {
	c := mat.Bundle.Cert
	return c.NotBefore.Add(time.Duration(float64(c.NotAfter.Sub(c.NotBefore)) * threshold))
}

// keyFiles counts the keys in the key store.
func keyFiles(t testing.TB, cfg *config.Config) int {
	t.Helper()
	es, err := os.ReadDir(cfg.KeyStore.Dir)
	require.NoError(t, err)
	return len(es)
}
