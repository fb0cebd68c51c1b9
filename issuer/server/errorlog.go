package server

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/audit"
)

// The ErrorLog of meshca's HTTP servers. net/http writes a line there for
// every failed TLS handshake, before anyone authenticated, quoting text the
// peer chose (a ClientHello's ALPN names: one hello of 50 KB made a line of
// 250 KB). Each message is cut to MaxHTTPErrorBytes, and at most
// httpErrorRate lines a second are written per server (bursts of
// httpErrorBurst); the next line written carries the number left out in
// "suppressed".
const (
	MaxHTTPErrorBytes = 512
	httpErrorRate     = 1
	httpErrorBurst    = 10
)

// HTTPErrorLog returns an http.Server ErrorLog writing to log at level,
// with the field listener=name (a name meshca chose). clk is nil for the
// real clock.
func HTTPErrorLog(l *slog.Logger, name string, level slog.Level, clk clock.PassiveClock) *log.Logger {
	if clk == nil {
		clk = clock.RealClock{}
	}
	// No prefix or flags: slog adds the time.
	return log.New(&httpErrorWriter{log: l, name: name, level: level, clock: clk,
		sample: audit.NewSample(httpErrorRate, httpErrorBurst)}, "", 0)
}

type httpErrorWriter struct {
	log   *slog.Logger
	name  string
	level slog.Level
	clock clock.PassiveClock

	mu     sync.Mutex
	sample *audit.Sample
}

// Write takes one message of net/http (the log package calls Write once
// per message).
func (w *httpErrorWriter) Write(p []byte) (int, error) {
	if !w.log.Enabled(context.Background(), w.level) {
		return len(p), nil
	}
	w.mu.Lock()
	n, ok := w.sample.Take(w.clock.Now())
	w.mu.Unlock()
	if !ok {
		return len(p), nil
	}
	msg := p
	if len(msg) > MaxHTTPErrorBytes {
		msg = msg[:MaxHTTPErrorBytes]
	}
	w.log.Log(context.Background(), w.level, "http server error", slog.String("listener", w.name),
		slog.String("error", strings.ToValidUTF8(strings.TrimSuffix(string(msg), "\n"), "\uFFFD")),
		slog.Bool("truncated", len(p) > MaxHTTPErrorBytes), slog.Uint64("suppressed", n))
	return len(p), nil
}
