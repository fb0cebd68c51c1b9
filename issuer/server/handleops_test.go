package server_test

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/test/logbuf"
)

// A handler mounted with HandleOps is served on the operations listener
// next to /healthz; a panic in it answers 500 and is logged with its stack,
// and the listener keeps serving.
func TestHandleOps_MountsAndRecovers(t *testing.T) {
	var logs logbuf.Buffer
	opts := baseOptions()
	opts.Log = slog.New(slog.NewTextHandler(&logs, nil))
	srv, err := server.New(opts)
	require.NoError(t, err)
	srv.HandleOps("GET /crl/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/crl/panic" {
			panic("boom")
		}
		w.Write([]byte("crl"))
	}))
	prepare(srv).run(t)
	base := "http://" + srv.OpsAddr().String()
	get := func(path string) (int, string) { return httpGet(t, base+path) }
	code, body := get("/crl/x.crl")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "crl", body)
	code, body = get("/crl/panic")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, "internal error\n", body)
	require.Contains(t, logs.String(), "panic in an operations handler")
	require.Contains(t, logs.String(), "boom")
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code)
}
