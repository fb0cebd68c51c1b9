package intermediate

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/crl"
)

// A pre-issued intermediate (root.file.cacertsDir) cannot be rotated: the
// Manager records and activates it once, says "pre-issued", never mints,
// and is stuck with an actionable problem once it is past the activation
// threshold.
func TestManager_PreIssuedIntermediateIsNeverRotated(t *testing.T) {
	f, mat, _ := preIssuedFixture(t, true)
	st, cfg := f.st, f.cfg
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

// preIssuedFixture is a Manager (not started) on a fresh store and key
// directory whose root source is root.file.cacertsDir, holding Istio's
// files of an intermediate issued elsewhere (minted by a file root); mat
// is that intermediate, src the source. With withPQKey it is a catalyst
// intermediate and ca-pq-key.pem holds its ML-DSA key; without, it is
// classical, and under the catalyst profile meshca creates the ML-DSA key
// itself.
func preIssuedFixture(t *testing.T, withPQKey bool) (*fixture, *authority.Material, *root.CACertsSource) {
	return preIssuedFixtureWithSerial(t, withPQKey, nil)
}

// preIssuedFixtureWithSerial is preIssuedFixture with the intermediate
// re-signed by its root under serial (nil: as minted).
func preIssuedFixtureWithSerial(t *testing.T, withPQKey bool, serial *big.Int) (*fixture, *authority.Material, *root.CACertsSource) {
	t.Helper()
	issuer := newFixture(t, nil)
	if !withPQKey {
		// A classical intermediate from an enterprise CA: no ML-DSA key of
		// its own (2.5.29.72), so meshca creates one.
		issuer.cfg.Intermediate.Profile, issuer.cfg.Intermediate.PQAlgorithm = profile.Classical, ""
		issuer.src.Profile = profile.Classical
	}
	mat, err := issuer.m.Start(context.Background())
	require.NoError(t, err)
	g := generation(t, issuer.st, mat.Generation)
	if serial != nil {
		rootKey, err := issuer.km.Signer(issuer.cfg.Root.File.RootKey)
		require.NoError(t, err)
		tmpl := *mat.Bundle.Cert
		tmpl.SerialNumber = serial
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, mat.Bundle.Roots[0], mat.Bundle.Cert.PublicKey, rootKey)
		require.NoError(t, err)
		mat.Bundle.Cert, err = x509.ParseCertificate(der)
		require.NoError(t, err)
	}
	dir := filepath.Join(t.TempDir(), "cacerts")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	keyPEM, err := os.ReadFile(g.KeyRef)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, root.CAKeyFile), keyPEM, 0o600))
	if g.AltKeyRef != "" && withPQKey { // the default profile is catalyst
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
	t.Cleanup(func() { km.Close() })
	st, err := boltstore.Open(cfg.Store.Path)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	src := &root.CACertsSource{Dir: dir, Profile: cfg.Intermediate.Profile, Keys: km, Clock: clk}
	f := &fixture{parts: &parts{cfg: cfg, km: km, st: st}, clk: clk}
	f.m = New(Options{Config: cfg, Keys: km, Store: st, Root: src, Clock: clk, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return f, mat, src
}

// leftPrepared is what a start that recorded the pre-issued intermediate
// of src (creating its ML-DSA key) and died before activating it leaves:
// the record, prepared.
func leftPrepared(t *testing.T, f *fixture, src *root.CACertsSource) store.Generation {
	t.Helper()
	_, rec, err := f.m.loader.PreIssued(context.Background(), src, true)
	require.NoError(t, err)
	require.NotNil(t, rec)
	left, err := f.st.AddGeneration(context.Background(), *rec)
	require.NoError(t, err)
	return left
}

// A start that recorded the pre-issued intermediate and created its
// ML-DSA key, then died before activating it, leaves a prepared record:
// the next start activates that record with that key, instead of adding
// the certificate again under a second ML-DSA key.
func TestManager_PreIssuedRecordLeftPreparedIsActivatedNotAddedAgain(t *testing.T) {
	f, mat, src := preIssuedFixture(t, false)
	ctx := context.Background()
	left := leftPrepared(t, f, src)
	require.NotEmpty(t, left.AltKeyRef, "meshca created the ML-DSA key")

	f.clk.Step(time.Minute) // the restart
	active, err := f.m.Start(ctx)
	require.NoError(t, err)
	require.True(t, active.Bundle.Cert.Equal(mat.Bundle.Cert))
	require.Equal(t, left.ID, active.Generation, "the record left prepared is activated")
	require.Equal(t, map[uint64]store.GenerationState{left.ID: store.StateActive}, states(t, f.st))
	require.Equal(t, left.AltKeyRef, generation(t, f.st, left.ID).AltKeyRef)
	es, err := os.ReadDir(f.cfg.KeyStore.Dir)
	require.NoError(t, err)
	require.Len(t, es, 1, "one ML-DSA key")
	require.Equal(t, filepath.Base(left.AltKeyRef), es[0].Name())
}

// A record left prepared is not activated when its ML-DSA key is gone:
// the certificate is recorded again, with a new key.
func TestManager_PreIssuedRecordLeftPreparedIsPassedOverWhenItsKeyIsGone(t *testing.T) {
	f, mat, src := preIssuedFixture(t, false)
	ctx := context.Background()
	left := leftPrepared(t, f, src)
	require.NoError(t, os.Remove(left.AltKeyRef))

	f.clk.Step(time.Minute) // the restart
	active, err := f.m.Start(ctx)
	require.NoError(t, err)
	require.True(t, active.Bundle.Cert.Equal(mat.Bundle.Cert))
	require.Greater(t, active.Generation, left.ID, "recorded again")
	require.Equal(t, store.StatePrepared, states(t, f.st)[left.ID])
	require.NotEqual(t, left.AltKeyRef, generation(t, f.st, active.Generation).AltKeyRef, "a new ML-DSA key")
}

// A pre-issued intermediate that meshca recorded as revoked, under any
// of its records, is refused at start and by the offline commands:
// revocation is of the certificate (its serial), so recording it again
// would sign under a revoked CA. Nothing is recorded and no key is made.
// A leaf's revocation under the same serial is another certificate and
// does not count.
func TestManager_PreIssuedIntermediateRevokedIsRefused(t *testing.T) {
	f, mat, src := preIssuedFixture(t, false)
	ctx := context.Background()
	left := leftPrepared(t, f, src)
	_, err := crl.NewRevoker(f.st, f.clk, nil).Revoke(ctx, crl.Request{Generation: left.ID, Reason: store.ReasonSuperseded, Requester: "test"})
	require.NoError(t, err)
	keysBefore, err := os.ReadDir(f.cfg.KeyStore.Dir)
	require.NoError(t, err)

	f.clk.Step(time.Minute) // the restart
	serial := hex.EncodeToString(mat.Bundle.Cert.SerialNumber.Bytes())
	want := fmt.Sprintf("root.file.cacertsDir: the intermediate in ca-cert.pem (%q, serial %s) was revoked as CA generation %d on %s (reason superseded); "+
		"meshca does not sign under a revoked CA: install a new intermediate issued by your enterprise CA in root.file.cacertsDir",
		mat.Bundle.Cert.Subject.String(), serial, left.ID, f.clk.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	_, err = f.m.Start(ctx)
	require.EqualError(t, err, want)
	_, err = f.m.loader.LoadActive(ctx)
	require.EqualError(t, err, want, "the offline commands refuse it too")
	gens, err := f.st.ListGenerations(ctx)
	require.NoError(t, err)
	require.Len(t, gens, 1, "nothing recorded")
	require.Equal(t, store.StatePrepared, gens[0].State())
	keysAfter, err := os.ReadDir(f.cfg.KeyStore.Dir)
	require.NoError(t, err)
	require.Equal(t, len(keysBefore), len(keysAfter), "no ML-DSA key made")

	// A serial the store cannot hold (0) was never revoked in it.
	z, zmat, _ := preIssuedFixtureWithSerial(t, false, big.NewInt(0))
	require.Zero(t, zmat.Bundle.Cert.SerialNumber.Sign())
	active, err := z.m.Start(ctx)
	require.NoError(t, err)
	require.True(t, active.Bundle.Cert.Equal(zmat.Bundle.Cert))

	// The same serial revoked as a leaf of another issuer does not count.
	g, gmat, _ := preIssuedFixture(t, false)
	_, err = g.st.Revoke(ctx, []store.Revocation{{Serial: hex.EncodeToString(gmat.Bundle.Cert.SerialNumber.Bytes()),
		Kind: store.KindLeaf, Generation: 7, Reason: store.ReasonKeyCompromise, RevokedAt: t0}})
	require.NoError(t, err)
	active, err = g.m.Start(ctx)
	require.NoError(t, err)
	require.True(t, active.Bundle.Cert.Equal(gmat.Bundle.Cert))
}

// A running replica whose pre-issued intermediate is revoked meanwhile
// (by a replica that runs another configuration) reports stuck with what
// to do, as a minted one does.
func TestManager_RunningPreIssuedIntermediateRevokedIsReported(t *testing.T) {
	f, _, _ := preIssuedFixture(t, false)
	ctx := context.Background()
	active, err := f.m.Start(ctx)
	require.NoError(t, err)
	_, err = f.st.Revoke(ctx, []store.Revocation{{
		Serial: hex.EncodeToString(active.Bundle.Cert.SerialNumber.Bytes()), Kind: store.KindIntermediate,
		Generation: active.Generation, Known: true, NotAfter: active.Bundle.Cert.NotAfter.UTC(),
		Reason: store.ReasonKeyCompromise, RevokedAt: f.clk.Now().UTC(),
	}})
	require.NoError(t, err)
	f.m.mu.Lock()
	f.m.evaluate(ctx)
	f.m.updateStatus()
	f.m.mu.Unlock()
	s := f.m.RotationStatus()
	require.True(t, s.Stuck)
	require.Equal(t, fmt.Sprintf("the active intermediate (generation %d) is recorded as revoked, most likely by a replica whose configuration no longer runs this lineage, and this replica still signs under it: "+
		"run the same configuration on every replica, or, if this lineage is to keep running, rotate it (meshca rotate intermediate; for root.file.cacertsDir, install a new intermediate and restart)", active.Generation), s.Problem)
}
