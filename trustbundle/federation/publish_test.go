package federation

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gatedSink holds its first SetFederated call until released, records
// what the last call to return asked for, and counts overlapping calls.
type gatedSink struct {
	entered, release chan struct{}

	mu       sync.Mutex
	calls    int
	inFlight int
	overlaps int
	roots    map[string][]*x509.Certificate
}

func (s *gatedSink) SetFederated(_ context.Context, _ []string, roots map[string][]*x509.Certificate) error {
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	s.inFlight++
	if s.inFlight > 1 {
		s.overlaps++
	}
	s.mu.Unlock()
	if first {
		close(s.entered)
		<-s.release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	s.roots = roots
	return nil
}

// Two trust domains updated at once (every endpoint is fetched at the same
// moment at start-up) must both end up published: the roots handed to the
// sink last hold every update, never an older view overtaking a newer one.
func TestPublish_ConcurrentUpdatesAreNeverLost(t *testing.T) {
	a := newCA(t, "partner root A", "")
	epA := newForeign(t, partner, nil)
	epA.serve(1, 0, a.cert)
	b := newCA(t, "other root B", "")
	epB := newForeign(t, "other.example", nil)
	epB.serve(1, 0, b.cert)
	f := newFixture(t, Options{}, web(epA, epA.webCAFile(t)), web(epB, epB.webCAFile(t)))
	s := &gatedSink{entered: make(chan struct{}), release: make(chan struct{})}
	f.p.o.Sink = s

	ctx := context.Background()
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := f.p.refresh(ctx, f.p.domains[0]); doneA <- err }()
	<-s.entered // A's publication (A's roots only) is in the sink
	go func() { _, err := f.p.refresh(ctx, f.p.domains[1]); doneB <- err }()
	// B fetches and publishes while A's publication is still in the sink;
	// give it the time to overtake A if it can.
	select {
	case err := <-doneB:
		require.NoError(t, err)
		doneB <- nil
	case <-time.After(time.Second):
	}
	close(s.release)
	require.NoError(t, <-doneA)
	require.NoError(t, <-doneB)

	s.mu.Lock()
	defer s.mu.Unlock()
	require.Zero(t, s.overlaps, "SetFederated ran concurrently")
	require.Len(t, s.roots, 2, "the last publication lost an update: %v", s.roots)
	require.True(t, s.roots[partner][0].Equal(a.cert))
	require.True(t, s.roots["other.example"][0].Equal(b.cert))
}
