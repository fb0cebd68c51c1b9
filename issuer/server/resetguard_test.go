package server_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshca/meshca/issuer/server"
)

// requestHeaders is the HPACK block of a gRPC request's headers for method.
func requestHeaders(t *testing.T, method string) []byte {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method},
		{":authority", "meshca"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		require.NoError(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	return hb.Bytes()
}

// readUntilEnd reads c's frames until the server ends the connection or
// c's deadline passes; it reports whether the server ended it and the
// RST_STREAM frames it sent. (It does not acknowledge SETTINGS: the test's
// goroutine owns the writes.)
func readUntilEnd(c net.Conn) (closed bool, resets int) {
	fr := http2.NewFramer(nil, c)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout()), resets
		}
		if _, ok := f.(*http2.RSTStreamFrame); ok {
			resets++
		}
	}
}

// newResetProbe is a probe server whose connections may reset 5 streams a
// second past a burst of 50.
func newResetProbe(t *testing.T) *probeEnv {
	t.Helper()
	return newProbe(t, func(o *server.Options) {
		o.Limits.MaxStreamResetsPerSecond = 5
		o.Limits.MaxStreamResetBurst = 50
	})
}

// closedStreamResets is meshca_grpc_connections_closed_total, whose one
// series is reason="stream_resets".
func closedStreamResets(t *testing.T, p *probeEnv) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(p.reg, "meshca_grpc_connections_closed_total")
	require.NoError(t, err)
	require.Equal(t, 1, n, "one series, reason stream_resets")
	return counterWithReason(t, p, "meshca_grpc_connections_closed_total", "stream_resets")
}

// refusedStreamResets is meshca_grpc_connections_refused_total{reason="stream_resets"}.
func refusedStreamResets(t *testing.T, p *probeEnv) float64 {
	t.Helper()
	return counterWithReason(t, p, "meshca_grpc_connections_refused_total", "stream_resets")
}

func counterWithReason(t *testing.T, p *probeEnv, name, reason string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{reason=%q}", name, reason)
	return 0
}

// rapidReset opens streams on a new plaintext connection and cancels each
// at once, up to pairs of them, until the server closes the connection; it
// returns the connection, whether the server closed it before its
// deadline, and the streams it opened and reset.
func rapidReset(t *testing.T, addr string, pairs int) (net.Conn, bool, int) {
	t.Helper()
	c, _ := h2c(t, addr)
	w := http2.NewFramer(c, nil)
	hb := requestHeaders(t, probeDeadline)
	ended := make(chan bool, 1)
	go func() {
		closed, _ := readUntilEnd(c)
		ended <- closed
	}()
	sent := 0
	for id := uint32(1); sent < pairs; id += 2 {
		err := w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndHeaders: true})
		if err == nil {
			err = w.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err != nil {
			break // the server closed the connection
		}
		sent++
	}
	return c, <-ended, sent
}

// HTTP/2 "rapid reset" (CVE-2023-44487): a client opens streams and
// cancels each at once. gRPC bounds the handlers running at a time, not
// the rate, so one unauthenticated connection could make meshca decode
// headers, start and cancel handlers as fast as it sends frames. A
// connection that resets streams faster than
// server.limits.maxStreamResetsPerSecond, past a burst of
// maxStreamResetBurst, is closed; after three such closes the address's
// new connections are refused until one close is forgiven
// (maxStreamResetBurst/maxStreamResetsPerSecond later).
func TestLimits_AConnectionThatKeepsResettingStreamsIsClosed(t *testing.T) {
	p := newProbe(t, func(o *server.Options) {
		o.Limits.MaxStreamResetsPerSecond = 20
		o.Limits.MaxStreamResetBurst = 50 // a close forgiven every 2.5 s
	})
	addr := p.GRPCAddr().String()
	for i := range 3 {
		c, closed, sent := rapidReset(t, addr, 5000)
		require.True(t, closed, "connection %d was still open after %d resets", i+1, sent)
		require.Equal(t, float64(i+1), closedStreamResets(t, p))
		_, port, err := net.SplitHostPort(c.LocalAddr().String())
		require.NoError(t, err)
		require.NotContains(t, p.log.String(), ":"+port, "the peer's address is caller input")
	}
	require.Contains(t, p.log.String(), `"msg":"closing a connection that resets too many streams"`)

	// Three closes spent the address's budget: a new connection from it is
	// closed as it is accepted, before any frame.
	again, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer again.Close()
	require.NoError(t, again.SetDeadline(time.Now().Add(5*time.Second)))
	require.True(t, closedByServer(again), "a new connection of the address is refused")
	require.Equal(t, float64(1), refusedStreamResets(t, p))
	// One close is forgiven after 2.5 s, and the address is served again.
	time.Sleep(2600 * time.Millisecond)
	requireHealthy(t, dial(t, addr))
}

// A client that shares its source address with one resetting streams
// (behind a NAT, a gateway) keeps its own connection: budgets are each
// connection's, and only new connections of the address are refused once
// it has had three connections closed.
func TestLimits_AnAbusersResetsDoNotCloseItsNeighboursConnection(t *testing.T) {
	p := newResetProbe(t)
	addr := p.GRPCAddr().String()
	neighbour := dial(t, addr)
	requireHealthy(t, neighbour)
	for range 4 {
		rapidReset(t, addr, 5000)
	}
	require.Equal(t, float64(3), closedStreamResets(t, p), "the fourth connection was refused at accept")
	require.Equal(t, float64(1), refusedStreamResets(t, p))
	// The neighbour cancels a request of its own (RST_STREAM CANCEL),
	// within its budget.
	ctx, cancel := context.WithCancel(context.Background())
	watch, err := healthpb.NewHealthClient(neighbour).Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = watch.Recv()
	require.NoError(t, err)
	cancel()
	requireHealthy(t, neighbour)
	require.Equal(t, float64(3), closedStreamResets(t, p), "the neighbour's connection stays open")
}

// A client that cancels its requests now and then, within the burst, keeps
// its connection.
func TestLimits_ResetsWithinTheBudgetKeepTheConnection(t *testing.T) {
	p := newResetProbe(t)
	c, _ := h2c(t, p.GRPCAddr().String())
	w := http2.NewFramer(c, nil)
	hb := requestHeaders(t, probeDeadline)
	for id := uint32(1); id < 2*40; id += 2 {
		require.NoError(t, w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndHeaders: true}))
		require.NoError(t, w.WriteRSTStream(id, http2.ErrCodeCancel))
	}
	require.NoError(t, w.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}))
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	fr := http2.NewFramer(nil, c)
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err, "the connection must stay open")
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
			require.Equal(t, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, pf.Data)
			break
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			require.NoError(t, w.WriteSettingsAck())
		}
	}
	require.Equal(t, float64(0), closedStreamResets(t, p))
}

// Resets the server sends count too: a client can make gRPC reset
// streams for it, here with a WINDOW_UPDATE of 0 on a stream (a stream
// error, RFC 9113 section 6.9: gRPC answers RST_STREAM PROTOCOL_ERROR even
// for a stream never opened), which costs meshca a frame and a reset each.
func TestLimits_StreamsTheServerResetsCountToo(t *testing.T) {
	p := newResetProbe(t)
	c, _ := h2c(t, p.GRPCAddr().String())
	w := http2.NewFramer(c, nil)
	w.AllowIllegalWrites = true
	type end struct {
		closed bool
		resets int
	}
	ended := make(chan end, 1)
	go func() {
		closed, resets := readUntilEnd(c)
		ended <- end{closed, resets}
	}()
	for id := uint32(1); id < 2*5000; id += 2 {
		if w.WriteWindowUpdate(id, 0) != nil {
			break
		}
	}
	e := <-ended
	require.True(t, e.closed, "the connection was still open after %d resets from the server", e.resets)
	require.GreaterOrEqual(t, e.resets, 50, "the burst")
	require.Equal(t, float64(1), closedStreamResets(t, p))
}
