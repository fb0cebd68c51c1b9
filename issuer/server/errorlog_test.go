package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	testingclock "k8s.io/utils/clock/testing"
)

// What net/http writes to its ErrorLog before anyone authenticated (a
// failed handshake quoting the peer's ALPN names) is cut to
// MaxHTTPErrorBytes and sampled: a burst, then one line a second carrying
// the number left out.
func TestHTTPErrorLog_CutsAndSamplesWhatPeersCause(t *testing.T) {
	var out bytes.Buffer
	clk := testingclock.NewFakeClock(time.Now())
	l := HTTPErrorLog(slog.New(slog.NewJSONHandler(&out, nil)), "admin", slog.LevelWarn, clk)
	long := "http: TLS handshake error from 127.0.0.1:5555: tls: client requested unsupported application protocols ([\"" + strings.Repeat("\x1bA", 100000) + "\"])"
	for range 100 {
		l.Print(long)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, httpErrorBurst)
	for _, line := range lines {
		require.Less(t, len(line), 6*MaxHTTPErrorBytes+200, "each line is cut (a control byte is 6 in JSON)")
		require.Contains(t, line, `"level":"WARN","msg":"http server error","listener":"admin","error":"http: TLS handshake error from 127.0.0.1:5555: tls: client requested unsupported application protocols ([\"\u001bA`)
		require.Contains(t, line, `,"truncated":true,"suppressed":0}`)
	}
	clk.Step(time.Second)
	l.Print("http: TLS handshake error from 127.0.0.1:5556: EOF")
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, httpErrorBurst+1)
	require.True(t, strings.HasSuffix(lines[httpErrorBurst], `"error":"http: TLS handshake error from 127.0.0.1:5556: EOF","truncated":false,"suppressed":90}`), lines[httpErrorBurst])

	// A level the logger does not write costs no token.
	quiet := HTTPErrorLog(slog.New(slog.NewJSONHandler(&out, nil)), "bundle-endpoint", slog.LevelDebug, clk)
	quiet.Print("x")
	require.Len(t, strings.Split(strings.TrimSpace(out.String()), "\n"), httpErrorBurst+1)
}
