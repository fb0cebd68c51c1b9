// Package replicatest runs several intermediate rotation Managers, as
// several meshca replicas do, on one real PostgreSQL store and one key
// store (the shared volume of keyStore.dir), under a stand-in for the
// Kubernetes Lease.
package replicatest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/authority"
	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/pgstore"
	"github.com/meshca/meshca/rotation"
	"github.com/meshca/meshca/rotation/intermediate"
	"github.com/meshca/meshca/test/pgenv"
)

var pg *pgenv.Env

func TestMain(m *testing.M) { os.Exit(pgenv.RunMain(m, &pg)) }

const (
	lifetime = 90 * 24 * time.Hour
	follow   = time.Second
)

// lease is the Lease as the replicas see it: the holder and its token
// (spec.leaseTransitions). A replica that lost it without noticing is
// modelled by a stale view (stale).
type lease struct {
	mu     sync.Mutex
	holder string
	token  uint64
}

func (l *lease) give(holder string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holder = holder
	l.token++
}

// view is one replica's view of the Lease; a frozen view keeps the fence
// it last saw (a holder that has not noticed that it lost the Lease).
type view struct {
	l      *lease
	name   string
	frozen atomic.Pointer[store.Fence]
}

func (v *view) Leading() (store.Fence, bool) {
	if f := v.frozen.Load(); f != nil {
		return *f, true
	}
	v.l.mu.Lock()
	defer v.l.mu.Unlock()
	return store.Fence{Holder: v.name, Token: v.l.token}, v.l.holder == v.name
}

func (v *view) freeze() {
	f, _ := v.Leading()
	v.frozen.Store(&f)
}

// replica is one meshca replica's Manager with its own store connection.
type replica struct {
	m       *intermediate.Manager
	view    *view
	mu      sync.Mutex
	changes []rotation.Change
}

func (r *replica) gotChanges() []rotation.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rotation.Change(nil), r.changes...)
}

// cluster is a CA configuration on one PostgreSQL database and one key
// store directory, and the Lease.
type cluster struct {
	cfg   *config.Config
	db    string
	clk   *clocktesting.FakeClock
	lease *lease
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cfg := config.Defaults(t.TempDir())
	cfg.Intermediate.Lifetime.Duration = lifetime
	now := time.Now().Truncate(time.Second)
	_, err := authority.CreateRoot(context.Background(), cfg, authority.RootRequest{
		CommonName: "test root", Organization: "meshca", Lifetime: 10 * 365 * 24 * time.Hour, KeyAlgorithm: keys.ECP256, Now: now.Add(-time.Hour),
	})
	require.NoError(t, err)
	return &cluster{cfg: cfg, db: pg.CreateDatabase(t), clk: clocktesting.NewFakeClock(now), lease: &lease{}}
}

// replica opens a replica named name: its own connection to the database
// and its own key manager on the shared key store directory.
func (c *cluster) replica(t *testing.T, name string) (*replica, *pgstore.Store) {
	t.Helper()
	ctx := context.Background()
	km, err := keys.Open(ctx, c.cfg.KeyStore)
	require.NoError(t, err)
	t.Cleanup(func() { km.Close() })
	st, err := pgstore.Open(ctx, pg.ConnString(c.db), pgstore.WithPassword(pg.Password))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	f := c.cfg.Root.File
	var src root.Source = &root.FileSource{RootCert: f.RootCert, RootKey: f.RootKey, RootPQKey: f.RootPQKey, Profile: c.cfg.Intermediate.Profile, Keys: km, Clock: c.clk}
	if f.CACertsDir != "" {
		src = &root.CACertsSource{Dir: f.CACertsDir, Profile: c.cfg.Intermediate.Profile, Keys: km, Clock: c.clk}
	}
	r := &replica{view: &view{l: c.lease, name: name}}
	r.m = intermediate.New(intermediate.Options{Config: c.cfg, Keys: km, Store: st, Root: src, Clock: c.clk,
		Leader: r.view, FollowInterval: follow, Log: slog.New(slog.NewTextHandler(io.Discard, nil)).With("replica", name)})
	r.m.Subscribe(func(_ context.Context, ch rotation.Change) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.changes = append(r.changes, ch)
		return nil
	})
	return r, st
}

// started is what a replica's Start returned.
type started struct {
	mat *authority.Material
	err error
}

// startInBackground runs r's Start in a goroutine (a follower's blocks).
func (r *replica) startInBackground() <-chan started {
	got := make(chan started, 1)
	go func() {
		mat, err := r.m.Start(context.Background())
		got <- started{mat, err}
	}()
	return got
}

// whileFollowing steps the clock through three polls of a waiting
// follower, calling check at each.
func (c *cluster) whileFollowing(t *testing.T, check func()) {
	t.Helper()
	for range 3 {
		require.Eventually(t, c.clk.HasWaiters, 10*time.Second, time.Millisecond)
		check()
		c.clk.Step(follow)
	}
}

// await steps the clock until the Start in got returns.
func (c *cluster) await(t *testing.T, got <-chan started) started {
	t.Helper()
	var r started
	require.Eventually(t, func() bool {
		select {
		case r = <-got:
			return true
		default:
			c.clk.Step(follow)
			return false
		}
	}, 10*time.Second, 5*time.Millisecond)
	return r
}

// startedPair opens replicas a (the Lease holder) and b, and starts a,
// then b; st is a's store.
func (c *cluster) startedPair(t *testing.T) (a, b *replica, st *pgstore.Store) {
	t.Helper()
	a, st = c.replica(t, "a")
	b, _ = c.replica(t, "b")
	c.lease.give("a")
	_, err := a.m.Start(t.Context())
	require.NoError(t, err)
	_, err = b.m.Start(t.Context())
	require.NoError(t, err)
	return a, b, st
}

// activeGenerations lists the active generations of the default lineage.
func activeGenerations(t *testing.T, st store.Generations) []uint64 {
	t.Helper()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	var out []uint64
	for _, g := range gens {
		if g.Active() && g.Lineage() == store.DefaultSigner {
			out = append(out, g.ID)
		}
	}
	return out
}

func countGenerations(t *testing.T, st store.Generations) int {
	t.Helper()
	gens, err := st.ListGenerations(context.Background())
	require.NoError(t, err)
	return len(gens)
}

// TestFollower_WaitsForTheLeaderToMintAndNeverMints starts a follower on
// an empty store: it mints nothing and waits; once the Lease holder has
// started (minting generation 1), the follower signs with generation 1.
func TestFollower_WaitsForTheLeaderToMintAndNeverMints(t *testing.T) {
	c := newCluster(t)
	a, st := c.replica(t, "a")
	b, _ := c.replica(t, "b")
	c.lease.give("a")

	got := b.startInBackground()
	// The follower polls every FollowInterval; step the clock through a
	// few polls: it must not mint.
	c.whileFollowing(t, func() { require.Zero(t, countGenerations(t, st), "the follower minted") })
	matA, err := a.m.Start(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1), matA.Generation)
	r := c.await(t, got)
	require.NoError(t, r.err)
	require.Equal(t, matA.Generation, r.mat.Generation)
	require.Equal(t, matA.Bundle.Cert.Raw, r.mat.Bundle.Cert.Raw)
	require.Equal(t, 1, countGenerations(t, st), "one generation, minted by the leader")
	require.Equal(t, []uint64{1}, activeGenerations(t, st))
}

// TestFollower_AdoptsTheLeadersRotation: the follower's Run reads the
// store and tells its subscribers about the generation the leader
// activated; it never writes the journal.
func TestFollower_AdoptsTheLeadersRotation(t *testing.T) {
	c := newCluster(t)
	a, b, st := c.startedPair(t)
	ctx := t.Context()
	_, err := b.m.RotateNow(ctx, "test")
	require.ErrorIs(t, err, intermediate.ErrNotLeader)
	go b.m.Run(ctx)

	next, err := a.m.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, uint64(2), next.Generation)
	require.Eventually(t, func() bool {
		c.clk.Step(follow)
		ch := b.gotChanges()
		return len(ch) > 0 && ch[len(ch)-1].Active.Generation == 2
	}, 10*time.Second, 5*time.Millisecond)
	ch := b.gotChanges()
	last := ch[len(ch)-1]
	require.Equal(t, rotation.ReasonActivated, last.Reason)
	require.Equal(t, next.Bundle.Cert.Raw, last.Active.Bundle.Cert.Raw)
	require.Len(t, last.Retained, 1, "the retired generation 1 stays published")
	require.Equal(t, uint64(1), last.Retained[0].Generation)
	require.Equal(t, uint64(2), b.m.Active().Generation)
	require.Equal(t, 2, countGenerations(t, st))
	require.Equal(t, []uint64{2}, activeGenerations(t, st))
}

// TestTakeover_SwitchIsFencedAndCompared: a new lease holder whose view
// is stale loses the compare-and-set (another replica moved first) and
// adopts the store's generation; the old holder, which has not noticed
// that it lost the Lease, is fenced. Never two active generations.
func TestTakeover_SwitchIsFencedAndCompared(t *testing.T) {
	c := newCluster(t)
	a, b, st := c.startedPair(t)
	ctx := t.Context()

	// A activates generation 2; B has not followed yet (its view: 1).
	g2, err := a.m.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, uint64(1), b.m.Active().Generation)
	// The Lease moves to B; A keeps believing it leads under its old token.
	a.view.freeze()
	c.lease.give("b")

	// B rotates from its stale view: the switch names generation 1, which
	// is no longer active. B adopts generation 2 instead.
	_, err = b.m.RotateNow(ctx, "test")
	require.ErrorIs(t, err, store.ErrConflict)
	require.Equal(t, g2.Generation, b.m.Active().Generation)
	require.Equal(t, []uint64{g2.Generation}, activeGenerations(t, st))

	// Now B rotates for real, under the new token.
	g4, err := b.m.RotateNow(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, []uint64{g4.Generation}, activeGenerations(t, st))

	// A, fenced, cannot activate what it mints; it adopts B's generation.
	_, err = a.m.RotateNow(ctx, "test")
	require.ErrorIs(t, err, store.ErrFenced)
	require.Equal(t, g4.Generation, a.m.Active().Generation)
	require.Equal(t, []uint64{g4.Generation}, activeGenerations(t, st))
}
