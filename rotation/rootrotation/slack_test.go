package rootrotation

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation/alert"
)

// The phases reach Slack through the real alerting engine and Slack sink:
// one message per phase, in order, saying what happens and what meshca
// does; the rotation's end resolves it.
func TestController_PhasesReachSlackInOrder(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	urlFile := filepath.Join(t.TempDir(), "url")
	require.NoError(t, os.WriteFile(urlFile, []byte(srv.URL), 0o600))
	slack, err := alert.NewSlack(urlFile, nil)
	require.NoError(t, err)

	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	e, err := alert.New(ctx, alert.Options{States: h.st, Sinks: []alert.Sink{slack}, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	h.c.SetAlerts(e)

	h.issue("01", 24*time.Hour)
	h.start()
	h.step()
	_, err = h.c.Advance(ctx, "alice")
	require.NoError(t, err)
	h.step()
	_, err = h.c.Advance(ctx, "alice")
	require.NoError(t, err)
	h.step()
	h.requirePhase(PhaseDone)

	want := []string{
		"phase publish-both-roots (1 of 5)", "phase wait-for-workloads (2 of 5)", "phase switch-intermediate (3 of 5) (wait ended by alice)",
		"phase wait-out-ttl (4 of 5)", "phase remove-old-root (5 of 5) (wait ended by alice)",
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bodies) >= len(want)+1
	}, 30*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i, w := range want {
		require.Contains(t, bodies[i], w, "message %d", i)
		require.Contains(t, bodies[i], "root rotation "+h.journal().ID, "where")
	}
	require.Contains(t, bodies[0], "the new root is appended to root-cert.pem in the cacerts Secret", "what meshca does")
	require.Contains(t, bodies[1], "at least 10m0s, at most 12h10m0s")
	require.True(t, strings.Contains(strings.ToLower(bodies[len(want)]), "resolved"), "the end resolves it: %s", bodies[len(want)])
}
