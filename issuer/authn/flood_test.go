package authn_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/issuer/authn"
)

// jwtShapedGarbage is a distinct token that passes the syntax check (three
// base64url segments, a JSON header with an alg, a JSON payload) but that
// no apiserver authenticates.
func jwtShapedGarbage(t *testing.T, i int) string {
	t.Helper()
	sig := make([]byte, 64)
	_, err := rand.Read(sig)
	require.NoError(t, err)
	b64 := base64.RawURLEncoding.EncodeToString
	return b64([]byte(`{"alg":"RS256","kid":"x"}`)) + "." +
		b64(fmt.Appendf(nil, `{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:default:g%d","aud":["istio-ca"]}`, i)) + "." + b64(sig)
}

// Unauthenticated callers must not be able to make meshca flood the
// apiserver with TokenReviews, evict cached successes, or starve a valid
// token.
func TestTokenReview_GarbageFloodCostsBoundedReviewsAndAValidTokenStillSucceeds(t *testing.T) {
	c := testCtx(t)
	cached, err := env.MintToken(c, "tr-flood", "cached", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	fresh, err := env.MintToken(c, "tr-flood", "fresh", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	const maxInFlight = 4
	f := newReviewer(t, func(o *authn.TokenReviewOptions) { o.MaxInFlight = maxInFlight; o.NegativeCacheSize = 64 })
	_, err = f.review(t, cached, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, f.calls.n.Load())

	flood := func(tokens []string, deadline time.Duration) []error {
		errs := make([]error, len(tokens))
		var wg sync.WaitGroup
		for i, tok := range tokens {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				_, errs[i] = f.a.Authenticate(ctx, authn.Credentials{BearerToken: tok})
			})
		}
		wg.Wait()
		return errs
	}

	// 1000 distinct tokens that are not JWTs, with tiny deadlines: refused
	// by the syntax check, no review at all.
	garbage := make([]string, 1000)
	for i := range garbage {
		garbage[i] = fmt.Sprintf("garbage-%d", i)
	}
	for _, err := range flood(garbage, time.Millisecond) {
		requireFailure(t, err, authn.ReasonMalformedToken)
		require.False(t, authn.IsUnavailable(err))
	}
	require.EqualValues(t, 1, f.calls.n.Load(), "non-JWT garbage is never reviewed")

	// 1000 distinct JWT-shaped tokens with tiny deadlines: the callers
	// cannot wait for an answer, so no review is started.
	shaped := make([]string, 1000)
	for i := range shaped {
		shaped[i] = jwtShapedGarbage(t, i)
	}
	for _, err := range flood(shaped, time.Millisecond) {
		require.Error(t, err)
	}
	require.EqualValues(t, 1, f.calls.n.Load(), "no review for a caller whose deadline leaves no time for one")

	// 200 distinct JWT-shaped tokens whose callers do wait: each costs at
	// most one review, never more than maxInFlight at once.
	for _, err := range flood(shaped[:200], 2*time.Second) {
		if !authn.IsUnavailable(err) {
			requireFailure(t, err, authn.ReasonUnauthenticatedToken)
		}
	}
	require.LessOrEqual(t, f.calls.n.Load(), int64(1+200))
	require.LessOrEqual(t, f.calls.maxSeen.Load(), int64(maxInFlight), "TokenReviews in flight at once")
	// A caller whose deadline ran out returns before its review ends, which
	// then releases its slot.
	require.Eventually(t, func() bool { return metricValue(t, f, authn.MetricReviewsInFlight, "") == 0 },
		10*time.Second, 10*time.Millisecond, "every slot was released")

	// The cached success survived the flood: no new review for it.
	before := f.calls.n.Load()
	caller, err := f.review(t, cached, "")
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/tr-flood/sa/cached", caller.Identity.String())
	require.Equal(t, before, f.calls.n.Load(), "garbage did not evict the cached success")

	// A valid token not seen before is reviewed and succeeds within 2 s.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	caller, err = f.a.Authenticate(ctx, authn.Credentials{BearerToken: fresh})
	require.NoError(t, err, "after %v", time.Since(start))
	require.Equal(t, "spiffe://cluster.local/ns/tr-flood/sa/fresh", caller.Identity.String())
	require.Less(t, time.Since(start), 2*time.Second)

	require.Equal(t, 1000.0, metricValue(t, f, authn.MetricRejectedBeforeReview, authn.PreReviewMalformed))
	require.Equal(t, 1000.0, metricValue(t, f, authn.MetricRejectedBeforeReview, authn.PreReviewDeadline))
}

// metricValue reads a counter or gauge of the fixture's registry; reason
// selects the series by its reason label ("" for an unlabelled metric).
func metricValue(t *testing.T, f *reviewerFixture, name, reason string) float64 {
	t.Helper()
	mfs, err := f.metrics.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{reason=%q}", name, reason)
	return 0
}
