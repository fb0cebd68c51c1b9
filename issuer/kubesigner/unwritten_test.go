package kubesigner_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/issuer/kubesigner"
)

// What is kept for a request is given back for that request only (its
// UID: a request created again under the name is another), until MaxAge
// or Forget.
func TestUnwritten_KeepsPerRequestUntilMaxAgeOrForget(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	u := kubesigner.Unwritten[string]{MaxAge: 2 * time.Minute, Clock: clk}
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	_, ok := u.Get(a, "uid-1")
	require.False(t, ok)

	u.Keep(a, "uid-1", "chain a")
	u.Keep(b, "uid-2", "chain b")
	got, ok := u.Get(a, "uid-1")
	require.True(t, ok)
	require.Equal(t, "chain a", got)
	clk.SetTime(clk.Now().Add(2*time.Minute - time.Nanosecond))
	got, ok = u.Get(a, "uid-1")
	require.True(t, ok, "just under MaxAge")
	require.Equal(t, "chain a", got)

	_, ok = u.Get(a, "uid-other")
	require.False(t, ok, "another request under the same name")
	_, ok = u.Get(a, "uid-1")
	require.False(t, ok, "dropped with the other UID's lookup")

	clk.SetTime(clk.Now().Add(time.Nanosecond))
	_, ok = u.Get(b, "uid-2")
	require.False(t, ok, "at MaxAge it is signed afresh")
	require.Zero(t, u.Len())

	u.Keep(a, "uid-1", "chain a")
	u.Forget(a)
	_, ok = u.Get(a, "uid-1")
	require.False(t, ok)

	var forever kubesigner.Unwritten[int] // no MaxAge
	forever.Keep(a, "uid-1", 7)
	n, ok := forever.Get(a, "uid-1")
	require.True(t, ok)
	require.Equal(t, 7, n)
}

// Keeping a result drops those past MaxAge (a request deleted while
// another replica led is never looked up again), and Reset drops all.
func TestUnwritten_KeepDropsTheExpiredAndResetDropsAll(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	u := kubesigner.Unwritten[string]{MaxAge: time.Minute, Clock: clk}
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	u.Keep(a, "uid-a", "chain a")
	clk.SetTime(clk.Now().Add(time.Minute))
	u.Keep(b, "uid-b", "chain b")
	require.Equal(t, 1, u.Len(), "a is past MaxAge")
	u.Reset()
	require.Zero(t, u.Len())
	_, ok := u.Get(b, "uid-b")
	require.False(t, ok)
}
