package authn_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/issuer/authn"
)

// holdingTransport holds every TokenReview of a JWT-shaped garbage token
// (see jwtShapedGarbage) until release is closed or its request ends, so
// that a flood keeps its review slots for as long as the test wants.
// Reviews of other tokens pass straight to the apiserver.
type holdingTransport struct {
	next    http.RoundTripper
	release chan struct{}
	held    atomic.Int64
}

var garbageHeader = []byte(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"x"}`)))

func (h *holdingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, garbageHeader) {
			h.held.Add(1)
			defer h.held.Add(-1)
			select {
			case <-h.release:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
		}
	}
	return h.next.RoundTrip(r)
}

func holdingReviewer(t *testing.T, mod func(*authn.TokenReviewOptions)) (*authn.TokenReviewer, *holdingTransport, *prometheus.Registry) {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	authn.TuneRESTConfig(cfg)
	h := &holdingTransport{release: make(chan struct{})}
	t.Cleanup(func() { close(h.release) })
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { h.next = rt; return h })
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	clusters, err := authn.NewClusters("", cs, nil)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	o := authn.TokenReviewOptions{Clusters: clusters, TrustDomain: trustDomain, Registerer: reg, MaxInFlight: 8}
	if mod != nil {
		mod(&o)
	}
	a, err := authn.NewTokenReviewer(o)
	require.NoError(t, err)
	return a, h, reg
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	return metricValue(t, &reviewerFixture{metrics: reg}, name, reason)
}

// floodFrom starts n callers at peer, each with a distinct JWT-shaped
// garbage token, that wait up to a minute; it returns their errors.
func floodFrom(t *testing.T, a *authn.TokenReviewer, peer string, first, n int) chan error {
	t.Helper()
	errs := make(chan error, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		tok := jwtShapedGarbage(t, first+i)
		wg.Go(func() {
			_, err := a.Authenticate(ctx, authn.Credentials{BearerToken: tok, PeerAddr: peer})
			errs <- err
		})
	}
	return errs
}

// One peer flooding JWT-shaped garbage holds at most MaxInFlightPerPeer
// review slots; the rest of its flood is refused at once as Unavailable
// (so that istio-agent backs off), and a valid token from another peer is
// reviewed and succeeds while the flood holds its slots.
func TestTokenReview_OnePeerHoldsAtMostItsShareOfReviews(t *testing.T) {
	require.Equal(t, 2, authn.DefaultTokenReviewMaxInFlightPerPeer)
	c := testCtx(t)
	valid, err := env.MintToken(c, "tr-peer", "legit", []string{"istio-ca"}, time.Hour)
	require.NoError(t, err)
	a, h, reg := holdingReviewer(t, nil)

	const flood = 40
	errs := floodFrom(t, a, "203.0.113.66", 0, flood)
	for range flood - authn.DefaultTokenReviewMaxInFlightPerPeer {
		select {
		case err := <-errs:
			requireFailure(t, err, authn.ReasonReviewFailed)
			require.True(t, authn.IsUnavailable(err), "refused as Unavailable: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("the flood beyond its peer's share was not refused at once (%d reviews held)", h.held.Load())
		}
	}
	require.Eventually(t, func() bool { return h.held.Load() == int64(authn.DefaultTokenReviewMaxInFlightPerPeer) },
		30*time.Second, 10*time.Millisecond, "the flooding peer's reviews reach the apiserver")
	require.Equal(t, float64(flood-authn.DefaultTokenReviewMaxInFlightPerPeer),
		counterValue(t, reg, authn.MetricRejectedBeforeReview, authn.PreReviewPerPeer))

	// A valid token from another peer, with a 5 s deadline, succeeds.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	caller, err := a.Authenticate(ctx, authn.Credentials{BearerToken: valid, PeerAddr: "198.51.100.7"})
	require.NoError(t, err)
	require.Equal(t, "spiffe://cluster.local/ns/tr-peer/sa/legit", caller.Identity.String())
	require.EqualValues(t, authn.DefaultTokenReviewMaxInFlightPerPeer, h.held.Load(), "the flood still holds its slots")
}

// When every review slot is taken (by many peers), a new review is refused
// at once as Unavailable, counted as overloaded, instead of waiting for
// the caller's deadline.
func TestTokenReview_FullSlotsRefuseAtOnceAsUnavailable(t *testing.T) {
	a, h, reg := holdingReviewer(t, nil)
	for i, peer := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"} {
		floodFrom(t, a, peer, 100*i, 2)
	}
	require.Eventually(t, func() bool { return h.held.Load() == 8 }, 30*time.Second, 10*time.Millisecond, "8 slots held")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := a.Authenticate(ctx, authn.Credentials{BearerToken: jwtShapedGarbage(t, 999), PeerAddr: "203.0.113.5"})
	require.Less(t, time.Since(start), 5*time.Second, "refused without waiting for a slot")
	requireFailure(t, err, authn.ReasonReviewFailed)
	require.True(t, authn.IsUnavailable(err))
	require.NoError(t, ctx.Err(), "refused before the caller's deadline")
	require.Equal(t, 1.0, counterValue(t, reg, authn.MetricRejectedBeforeReview, authn.PreReviewOverloaded))
	require.EqualValues(t, 8, h.held.Load())
}
