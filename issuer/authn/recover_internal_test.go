package authn

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A panic in a review (which parses the caller's token) runs outside the
// gRPC recovery interceptor: it must become an authentication failure for
// the caller, free its slot, and leave the process running.
func TestReviewFlights_PanicInReviewIsAFailure(t *testing.T) {
	g := newReviewFlights(1, 1, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, ok, why := g.do(ctx, newReviewKey("k", "t"), "192.0.2.1", func(context.Context) reviewResult {
		few := []string{"a"}
		return reviewResult{fail: &Failure{Reason: few[len(t.Name())]}} // index out of range: a runtime panic
	})
	require.True(t, ok)
	require.Equal(t, refusedNone, why)
	_, err := res.get()
	require.Error(t, err)
	require.Equal(t, "error", ReasonOf(err))
	require.False(t, IsUnavailable(err), "a panic is not an outage to retry")
	require.Zero(t, g.slotsInUse(), "the slot is freed")
}

// A panic while loading a JWKS (singleflight re-panics it in a new
// goroutine, ending the process) becomes a failed load: the caller gets an
// Unavailable error and the next load can run.
func TestKeySet_PanicInLoadIsAFailedLoad(t *testing.T) {
	s := &keySet{
		load:       func(context.Context) ([]byte, error) { panic("loader bug") },
		source:     "test",
		refresh:    time.Hour,
		minRefresh: time.Second,
		timeout:    10 * time.Second,
	}
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.keysFor(ctx, "kid", now)
	require.Error(t, err)
	require.True(t, IsUnavailable(err))
	_, err = s.keysFor(ctx, "kid", now.Add(2*time.Second))
	require.Error(t, err, "a second load after the first panicked")
}
