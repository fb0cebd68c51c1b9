package server_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/issuer/server"
)

// The operations port serves CRLs to relying parties as well as the
// kubelet's probes: one source address holds at most a quarter of its
// connections (16 of the default 64); the next one from that address is
// closed at once, and a probe from another address still gets an answer.
func TestOps_OneAddressCannotTakeEverySlot(t *testing.T) {
	r := newRunning(t, nil)
	addr := r.OpsAddr().String()
	for i := range 16 {
		c := dialFrom(t, "127.0.0.2", addr)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		_, err := c.Read(make([]byte, 1))
		ne, ok := err.(net.Error)
		require.True(t, ok && ne.Timeout(), "connection %d is within the address's share: %v", i, err)
	}
	require.True(t, closedAtOnce(t, dialFrom(t, "127.0.0.2", addr)), "the 17th connection of one address must be closed at once")
	code, body := get(t, r, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
}

// A large response on the operations port (a CRL of tens of MB to a slow
// relying party) gets a write deadline sized to its body, so that
// server.limits.opsWriteTimeout does not cut it.
func TestHandleOps_LargeBodyIsNotCutByTheWriteTimeout(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
	srv, err := server.New(func() server.Options {
		o := baseOptions()
		o.Limits.OpsWriteTimeout.Duration = 200 * time.Millisecond
		return o
	}())
	require.NoError(t, err)
	srv.HandleOps("GET /crl/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(body)
	}))
	start(t, srv)
	c := dialFrom(t, "127.0.0.1", srv.OpsAddr().String())
	_, err = c.Write([]byte("GET /crl/big.crl HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	// A slow reader: nothing is read for longer than the write timeout.
	time.Sleep(time.Second)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "read %d of %d bytes", len(got), len(body))
	require.Equal(t, len(body), len(got))
	require.True(t, bytes.Equal(body, got))
}
