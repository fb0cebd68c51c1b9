package bundleendpoint_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// panickyWriter panics on its first Write, as a handler bug would.
type panickyWriter struct {
	*httptest.ResponseRecorder
	wrote bool
}

func (p *panickyWriter) Write(b []byte) (int, error) {
	if !p.wrote {
		p.wrote = true
		panic("boom")
	}
	return p.ResponseRecorder.Write(b)
}

// TestHandler_APanicIsRecoveredAndCounted: a panic while answering does
// not take the process down; it is counted as outcome panic.
func TestHandler_APanicIsRecoveredAndCounted(t *testing.T) {
	rs := &roots{}
	rs.set(newRoot(t, "root A"))
	b := newBundler(t, rs, openBolt(t, filepath.Join(t.TempDir(), "meshca.db")), time.Minute)
	reg := prometheus.NewRegistry()
	require.NoError(t, b.Register(reg))
	require.NoError(t, b.Refresh(context.Background()))
	w := &panickyWriter{ResponseRecorder: httptest.NewRecorder()}
	require.NotPanics(t, func() { b.Handler("/").ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil)) })
	require.Equal(t, 1.0, requests(t, reg, "panic"))
	require.Equal(t, 0.0, requests(t, reg, "ok"))
}
