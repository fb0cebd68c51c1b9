package leader

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/test/kubeenv"
	"github.com/meshca/meshca/test/logbuf"
)

var env *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &env)) }

// term is one run of a replica's singleton job.
type term struct {
	replica    string
	fence      store.Fence
	start, end time.Time
}

// terms records every run of the job on every replica.
type terms struct {
	mu  sync.Mutex
	all []*term
}

// job is the singleton job of replica r on elector e: it records its run.
func (ts *terms) job(r string, e *Elector) func(ctx context.Context) {
	return func(ctx context.Context) {
		f, ok := e.Leading()
		tm := &term{replica: r, fence: f, start: time.Now()}
		ts.mu.Lock()
		ts.all = append(ts.all, tm)
		ts.mu.Unlock()
		<-ctx.Done()
		ts.mu.Lock()
		tm.end = time.Now()
		if !ok {
			tm.replica += " (without a fence)"
		}
		ts.mu.Unlock()
	}
}

func (ts *terms) snapshot() []term {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]term, len(ts.all))
	for i, t := range ts.all {
		out[i] = *t
	}
	return out
}

// running is the replica whose job runs now ("" if none).
func (ts *terms) running() string {
	for _, t := range ts.snapshot() {
		if t.end.IsZero() {
			return t.replica
		}
	}
	return ""
}

func newElector(t *testing.T, lease, identity string) *Elector {
	t.Helper()
	e, err := New(env.Config, Options{
		Namespace: "default", Name: lease, Identity: identity,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 250 * time.Millisecond,
		StopWait: 5 * time.Second,
		Log:      slog.New(slog.NewTextHandler(logbuf.ForTest(t), nil)),
	})
	require.NoError(t, err)
	return e
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An apiserver outage longer than the renew deadline costs the holder the
// Lease: its job stops, and it does not end (Run keeps campaigning), so
// that once the apiserver answers again one replica leads and runs the
// job anew. No two terms of the job ever overlap, and each runs under a
// fence.
func TestRun_LostLeaseStopsTheJobsAndCampaignsAgain(t *testing.T) {
	ts := &terms{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	els := map[string]*Elector{}
	for _, r := range []string{"replica-a", "replica-b"} {
		e := newElector(t, "lost-lease", r)
		els[r] = e
		e.Go("job", ts.job(r, e))
		wg.Go(func() { e.Run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	waitUntil(t, 10*time.Second, "a replica leads", func() bool { return ts.running() != "" })
	first := ts.running()

	require.NoError(t, env.StopAPIServer())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = env.RestartAPIServer()
		}
	})
	require.Equal(t, 1.0, testutil.ToFloat64(els[first].held))
	waitUntil(t, 10*time.Second, "the holder's job stops once it cannot renew", func() bool { return ts.running() == "" })
	// The counter is bumped right after Lost.
	waitUntil(t, 10*time.Second, "the term ends", func() bool {
		return els[first].Lost() == 1 && testutil.ToFloat64(els[first].lostRate) == 1
	})
	waitUntil(t, 5*time.Second, "meshca_lease_held 0", func() bool { return testutil.ToFloat64(els[first].held) == 0 })
	restarted = true
	require.NoError(t, env.RestartAPIServer())

	waitUntil(t, 30*time.Second, "a replica leads again after the outage", func() bool { return ts.running() != "" })
	got := ts.snapshot()
	require.Len(t, got, 2, "one term before the outage, one after: %+v", got)
	require.Equal(t, first, got[0].replica)
	require.False(t, got[1].start.Before(got[0].end), "the terms overlap: %+v", got)
	for _, tm := range got {
		require.Equal(t, tm.replica, tm.fence.Holder, "term %+v", tm)
	}
	if got[1].replica != got[0].replica {
		require.Greater(t, got[1].fence.Token, got[0].fence.Token, "a new holder's fence: %+v", got)
	}
	require.Equal(t, 1.0, testutil.ToFloat64(els[got[1].replica].held))
	for r, e := range els {
		_, leads := e.Leading()
		require.Equal(t, r == got[1].replica, leads, fmt.Sprintf("%s leads", r))
		// Both still campaign: each observes the holder of the new term.
		waitUntil(t, 5*time.Second, r+" observes the new holder", func() bool { return e.Holder() == got[1].replica })
	}
}

// Shutdown stops the job before Run returns (the Lease is released after
// the jobs), and does not count as a lost Lease.
func TestRun_ShutdownStopsTheJobsFirst(t *testing.T) {
	ts := &terms{}
	e := newElector(t, "shutdown", "replica-a")
	e.Go("job", ts.job("replica-a", e))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	waitUntil(t, 10*time.Second, "the replica leads", func() bool { return ts.running() != "" })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	got := ts.snapshot()
	require.Len(t, got, 1)
	require.False(t, got[0].end.IsZero(), "the job was still running when Run returned")
	require.Zero(t, e.Lost())
	lease, err := env.Client.CoordinationV1().Leases("default").Get(context.Background(), "shutdown", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, ptr.Deref(lease.Spec.HolderIdentity, ""), "the Lease is released on shutdown")
}

// A just-started kube-apiserver answers Forbidden until its authorizer
// has loaded the roles: Check retries Forbidden, and passes once the
// grant is seen; a grant that never comes is an error that says so.
func TestCheck_RetriesForbiddenUntilTheGrantIsSeen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// An earlier test may have just restarted the apiserver.
	waitUntil(t, 30*time.Second, "the apiserver answers", func() bool {
		_, err := env.Client.CoordinationV1().Leases("default").List(ctx, metav1.ListOptions{})
		return err == nil
	})
	ns := fmt.Sprintf("lease-check-%d", time.Now().UnixNano()%1e6)
	require.NoError(t, env.CreateNamespace(ctx, ns))
	rc, sa, err := env.ClientAs(ctx, ns, "meshca")
	require.NoError(t, err)
	// A just-restarted apiserver may answer the ServiceAccount otherwise
	// (Check gives no verdict then) before it settles on Forbidden.
	waitUntil(t, 30*time.Second, "the ServiceAccount is refused the Lease", func() bool {
		_, err := sa.CoordinationV1().Leases(ns).Get(ctx, "meshca-controllers", metav1.GetOptions{})
		return apierrors.IsForbidden(err)
	})
	defer func(d, r time.Duration) { checkForbiddenFor, checkRetry = d, r }(checkForbiddenFor, checkRetry)
	checkForbiddenFor, checkRetry = 3*time.Second, 100*time.Millisecond

	newElector := func(rc *rest.Config) *Elector {
		e, err := New(rc, Options{Namespace: ns, Name: "meshca-controllers", Identity: "replica-a",
			Log: slog.New(slog.NewTextHandler(logbuf.ForTest(t), nil))})
		require.NoError(t, err)
		return e
	}
	// client-go's rate limiter refuses a request whose wait would pass the
	// retries' deadline, before that deadline: such a refusal is not an
	// answer from the apiserver, and must not end the retries as "no
	// verdict". One request a second makes it certain within 3 s.
	throttled := rest.CopyConfig(rc)
	throttled.QPS, throttled.Burst = 1, 1
	err = newElector(throttled).Check(ctx)
	require.ErrorContains(t, err, "lease "+ns+"/meshca-controllers")
	require.ErrorContains(t, err, "forbidden")

	e := newElector(rc)
	err = e.Check(ctx)
	require.ErrorContains(t, err, "lease "+ns+"/meshca-controllers")
	require.ErrorContains(t, err, "forbidden")

	granted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second) // the grant arrives while Check retries
		_, err := env.ApplyYAML(context.Background(), []byte(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {namespace: `+ns+`, name: lease}
rules:
- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {namespace: `+ns+`, name: lease}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: lease}
subjects:
- {kind: ServiceAccount, namespace: `+ns+`, name: meshca}
`))
		granted <- err
	}()
	require.NoError(t, e.Check(ctx))
	require.NoError(t, <-granted)
}

// leadOnce runs e until its job runs, returns its fence, and stops it
// (the Lease is released).
func leadOnce(t *testing.T, e *Elector) store.Fence {
	t.Helper()
	ts := &terms{}
	e.Go("job", ts.job(e.Identity(), e))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, 10*time.Second, "the replica leads", func() bool { return ts.running() != "" })
	f, ok := e.Leading()
	require.True(t, ok)
	return f
}

// The fence token is the Lease's spec.leaseTransitions. Deleting the
// Lease (to force an election, or a new leaderElection.leaseName) starts
// it from zero again, and the store refuses the next holders' writes as
// older than the last it accepted until the transitions pass that token.
// The remedy the fenced error and log name: set the Lease's
// leaseTransitions above the store's token; the next term writes. (A
// token from the Lease's creation time above the transitions was tried
// and withdrawn: a rollback to a release whose tokens are the
// transitions alone would be fenced for good. A token independent of the
// Lease needs a store-side counter.)
func TestKnownLimit_ADeletedLeaseFencesUntilItsTransitionsPassTheStoresToken(t *testing.T) {
	ctx := context.Background()
	leases := env.Client.CoordinationV1().Leases("default")
	_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "recreated"},
		Spec: coordinationv1.LeaseSpec{LeaseTransitions: ptr.To[int32](5)}}, metav1.CreateOptions{})
	require.NoError(t, err)
	fa := leadOnce(t, newElector(t, "recreated", "replica-a"))
	require.Equal(t, uint64(6), fa.Token)
	last, err := store.CheckFence(store.Fence{}, fa)
	require.NoError(t, err, "replica-a writes")

	require.NoError(t, leases.Delete(ctx, "recreated", metav1.DeleteOptions{}))
	fb := leadOnce(t, newElector(t, "recreated", "replica-b"))
	_, err = store.CheckFence(last, fb)
	require.ErrorIs(t, err, store.ErrFenced, "the known limit: the holder of the new Lease is fenced")
	require.ErrorContains(t, err, `("replica-a" with token 6)`, "the error names the store's token")

	_, err = leases.Patch(ctx, "recreated", types.MergePatchType, []byte(`{"spec":{"leaseTransitions":10}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	fc := leadOnce(t, newElector(t, "recreated", "replica-c"))
	_, err = store.CheckFence(last, fc)
	require.NoError(t, err, "with leaseTransitions set above the store's token, the next term writes")
}
