package intermediate

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
)

// A pre-issued intermediate (root.file.cacertsDir) cannot be rotated: the
// Manager records and activates it once, says "pre-issued", never mints,
// and is stuck with an actionable problem once it is past the activation
// threshold.
func TestManager_PreIssuedIntermediateIsNeverRotated(t *testing.T) {
	// An intermediate issued elsewhere: minted by a file root, then given
	// to meshca as Istio's four files.
	issuer := newFixture(t, nil)
	mat, err := issuer.m.Start(context.Background())
	require.NoError(t, err)
	g := generation(t, issuer.st, mat.Generation)
	dir := filepath.Join(t.TempDir(), "cacerts")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	keyPEM, err := os.ReadFile(g.KeyRef)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CAKeyFile), keyPEM, 0o600))
	if g.AltKeyRef != "" { // the default profile is catalyst
		pqPEM, err := os.ReadFile(g.AltKeyRef)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, root.CAPQKeyFile), pqPEM, 0o600))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CACertFile), root.EncodePEM(mat.Bundle.Cert), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CertChainFile), root.EncodePEM(mat.Bundle.Chain()...), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.RootCertFile), root.EncodePEM(mat.Bundle.Roots...), 0o644))

	cfg := testConfig(t.TempDir())
	cfg.Root.File.RootCert, cfg.Root.File.RootKey, cfg.Root.File.RootPQKey, cfg.Root.File.CACertsDir = "", "", "", dir
	require.NoError(t, cfg.Validate())
	clk := clocktesting.NewFakeClock(t0)
	km, err := keys.Open(context.Background(), cfg.KeyStore)
	require.NoError(t, err)
	defer km.Close()
	st, err := boltstore.Open(cfg.Store.Path)
	require.NoError(t, err)
	defer st.Close()
	src := &root.CACertsSource{Dir: dir, Profile: cfg.Intermediate.Profile, Keys: km, Clock: clk}
	f := &fixture{parts: &parts{cfg: cfg, km: km, st: st}, clk: clk}
	f.m = New(Options{Config: cfg, Keys: km, Store: st, Root: src, Clock: clk, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	active, err := f.m.Start(context.Background())
	require.NoError(t, err)
	require.True(t, active.Bundle.Cert.Equal(mat.Bundle.Cert))
	require.Equal(t, map[uint64]store.GenerationState{active.Generation: store.StateActive}, states(t, st))
	s := f.m.RotationStatus()
	require.Equal(t, PhasePreIssued, s.Phase)
	require.Equal(t, 4, s.PhaseCode)
	require.False(t, s.Stuck)

	f.run(t)
	f.at(t, fraction(active, 0.5))
	f.at(t, fraction(active, 0.66))
	require.Equal(t, map[uint64]store.GenerationState{active.Generation: store.StateActive}, states(t, st), "nothing is minted")
	s = f.m.RotationStatus()
	require.Equal(t, PhasePreIssued, s.Phase)
	require.True(t, s.Stuck)
	require.Contains(t, s.Problem, "meshca cannot rotate it: put a new intermediate in root.file.cacertsDir and restart meshca")
	es, err := os.ReadDir(cfg.KeyStore.Dir)
	if !os.IsNotExist(err) {
		require.NoError(t, err)
	}
	require.Empty(t, es, "no key is created")
}
