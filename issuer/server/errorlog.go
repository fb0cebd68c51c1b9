package server

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
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
		lim: rate.NewLimiter(httpErrorRate, httpErrorBurst)}, "", 0)
}

type httpErrorWriter struct {
	log   *slog.Logger
	name  string
	level slog.Level
	clock clock.PassiveClock

	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed uint64
}

// Write takes one message of net/http (the log package calls Write once
// per message).
func (w *httpErrorWriter) Write(p []byte) (int, error) {
	if !w.log.Enabled(context.Background(), w.level) {
		return len(p), nil
	}
	w.mu.Lock()
	if !w.lim.AllowN(w.clock.Now(), 1) {
		w.suppressed++
		w.mu.Unlock()
		return len(p), nil
	}
	n := w.suppressed
	w.suppressed = 0
	w.mu.Unlock()
	msg := p
	if len(msg) > MaxHTTPErrorBytes {
		msg = msg[:MaxHTTPErrorBytes]
	}
	w.log.Log(context.Background(), w.level, "http server error", slog.String("listener", w.name),
		slog.String("error", strings.ToValidUTF8(strings.TrimSuffix(string(msg), "\n"), "\uFFFD")),
		slog.Bool("truncated", len(p) > MaxHTTPErrorBytes), slog.Uint64("suppressed", n))
	return len(p), nil
}
