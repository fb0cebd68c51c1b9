package alert

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	testclock "k8s.io/utils/clock/testing"
)

func counter(h *harness, sink, result string) float64 {
	return testutil.ToFloat64(h.e.metrics.notifications.WithLabelValues(sink, result))
}

// requireNoSecret fails when s holds any part of the webhook URL's secret path.
func requireNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, part := range strings.Split(strings.Trim(secretPath, "/"), "/")[1:] {
		require.NotContains(t, s, part)
	}
}

// The webhook URL never appears in a log line: not when the receiver
// fails, not when it cannot be reached (the HTTP client's *url.Error
// prints the URL), not when the receiver echoes it.
func TestWebhookURL_NeverInLogs(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := testclock.NewFakeClock(T0)

	echo := newReceiver(t, slackOK, answer{status: 500, body: "no webhook at " + secretPath}, answer{status: 404, body: secretPath})
	h := startEngine(t, clk, nil, Options{Log: log}, newSlack(t, echo))
	require.NoError(t, h.e.Raise(context.Background(), expiring))
	echo.next(t)
	clk.Step(h.sleep(t).d)
	echo.next(t) // the 404 ends the delivery
	h.ack(t)
	require.Equal(t, 1.0, counter(h, "slack", resultFailed))
	h.stop()

	dead := newReceiver(t, slackOK)
	dead.srv.Close() // connection refused
	wh, err := NewWebhook(dead.urlFile, nil)
	require.NoError(t, err)
	h = startEngine(t, clk, nil, Options{Log: log}, wh)
	require.NoError(t, h.e.Raise(context.Background(), expiring))
	for range maxAttempts - 1 {
		clk.Step(h.sleep(t).d)
	}
	h.ack(t)
	require.Equal(t, 1.0, counter(h, "webhook", resultFailed))
	out := logs.String()
	require.Contains(t, out, "connection refused", "the failures are logged")
	require.Contains(t, out, redacted)
	requireNoSecret(t, out)
}

// Errors name the URL file, never its content.
func TestWebhookURL_NeverInErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("hxxps://hooks.example"+secretPath), 0o600))
	_, err := NewSlack(bad, nil)
	require.ErrorContains(t, err, bad)
	requireNoSecret(t, err.Error())
	_, err = NewWebhook(filepath.Join(dir, "missing"), nil)
	require.ErrorContains(t, err, "reading the URL file")

	raw := "https://hooks.example" + secretPath
	ue := &url.Error{Op: "Post", URL: raw, Err: errors.New("dial tcp: lookup hooks.example: no such host")}
	msg := redact(ue, raw)
	require.Equal(t, "Post "+redacted+": dial tcp: lookup hooks.example: no such host", msg)
	_, err = http.NewRequest("POST", "https://hooks.example"+secretPath+"/%zz", nil)
	require.Error(t, err)
	requireNoSecret(t, redact(err, "https://hooks.example"+secretPath+"/%zz"))
}

// A sink that never answers does not hold the engine: Raise returns at
// once, the sink's queue is bounded and what does not fit is dropped and
// counted.
func TestDeadSink_DoesNotBlockTheEngine(t *testing.T) {
	clk := testclock.NewFakeClock(T0)
	block := make(chan struct{})
	r := newReceiver(t, answer{status: 200, body: "ok", block: block})
	t.Cleanup(func() { close(block) }) // before the server closes
	h := startEngine(t, clk, nil, Options{}, newSlack(t, r))
	ctx := context.Background()

	a := expiring
	require.NoError(t, h.e.Raise(ctx, a))
	r.next(t) // the worker is now stuck on this request
	const more = 300
	for i := range more {
		a.Object = "intermediate generation " + string(rune('A'+i%26)) + strings.Repeat("x", i/26)
		require.NoError(t, h.e.Raise(ctx, a))
	}
	require.Len(t, h.e.Firing(), more+1)
	require.Equal(t, float64(more-queueSize), counter(h, "slack", resultDropped))
	require.Equal(t, 0.0, counter(h, "slack", resultSent))
}
