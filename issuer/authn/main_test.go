package authn_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/issuer/authn"
	"github.com/meshca/meshca/test/kubeenv"
)

// env is a real kube-apiserver and etcd for the whole package.
var env *kubeenv.Env

func TestMain(m *testing.M) { os.Exit(kubeenv.RunMain(m, &env)) }

const trustDomain = "cluster.local"

func testCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// newClock is an injected clock that moves only when the test steps it.
func newClock() *testingclock.FakeClock { return testingclock.NewFakeClock(time.Now()) }

// reviewCounter counts the TokenReview creations sent to an apiserver,
// and the most that were in flight at once.
type reviewCounter struct {
	next     http.RoundTripper
	n        atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

func (c *reviewCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/apis/authentication.k8s.io/v1/tokenreviews") {
		c.n.Add(1)
		now := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for {
			m := c.maxSeen.Load()
			if now <= m || c.maxSeen.CompareAndSwap(m, now) {
				break
			}
		}
	}
	return c.next.RoundTrip(r)
}

// wrapCounting makes cfg count its TokenReviews in the returned counter.
func wrapCounting(cfg *rest.Config) *reviewCounter {
	c := &reviewCounter{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		c.next = rt
		return c
	})
	return c
}

// countingAdminClient is an admin client of the test apiserver that counts
// its TokenReviews.
func countingAdminClient(t *testing.T) (kubernetes.Interface, *reviewCounter) {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	authn.TuneRESTConfig(cfg)
	counter := wrapCounting(cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return cs, counter
}

// requireFailure asserts err is an authn *Failure with reason.
func requireFailure(t *testing.T, err error, reason string) *authn.Failure {
	t.Helper()
	require.Error(t, err)
	var f *authn.Failure
	require.ErrorAs(t, err, &f, "want a *authn.Failure with reason %s", reason)
	require.Equal(t, reason, f.Reason, "failure: %v", err)
	return f
}

// eventually polls f every 100 ms until it returns nil or the deadline
// passes, and returns f's last error.
func eventually(deadline time.Duration, f func() error) error {
	var last error
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, deadline, true, func(context.Context) (bool, error) {
		last = f()
		return last == nil, nil
	})
	return last
}
