package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/issuer/server"
	"github.com/meshca/meshca/test/grpcraw"
)

// messageOfSize is a valid protobuf message of exactly n bytes: one unknown
// length-delimited field, which google.protobuf.Empty accepts.
func messageOfSize(t *testing.T, n int) []byte {
	t.Helper()
	l := n - 2
	for 1+protowire.SizeVarint(uint64(l))+l > n {
		l--
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, make([]byte, l))
	require.Len(t, b, n)
	return b
}

func TestLimits_MessageOverMaxRecvMsgSizeIsResourceExhausted(t *testing.T) {
	p := newProbe(t, nil)
	conn := dial(t, p.GRPCAddr().String())
	var out []byte
	call := func(n int) error {
		msg := messageOfSize(t, n)
		return conn.Invoke(context.Background(), probeDeadline, &msg, &out, grpc.ForceCodecV2(grpcraw.Codec{}))
	}
	require.NoError(t, call(config.DefaultMaxRecvMsgSize))
	for _, n := range []int{config.DefaultMaxRecvMsgSize + 1, 4<<20 - 64} {
		err := call(n)
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%d bytes: %v", n, err)
	}
	requireHealthy(t, conn)
}

// h2c opens a plaintext HTTP/2 connection with prior knowledge and returns
// the framer after sending the client preface and empty SETTINGS.
func h2c(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	bw := bufio.NewWriter(c)
	_, err = bw.WriteString(http2.ClientPreface)
	require.NoError(t, err)
	fr := http2.NewFramer(bw, c)
	require.NoError(t, fr.WriteSettings())
	require.NoError(t, bw.Flush())
	return c, fr
}

func serverSettings(t *testing.T, fr *http2.Framer) map[http2.SettingID]uint32 {
	t.Helper()
	f, err := fr.ReadFrame()
	require.NoError(t, err)
	sf, ok := f.(*http2.SettingsFrame)
	require.True(t, ok, "the server's first frame is SETTINGS, got %T", f)
	out := map[http2.SettingID]uint32{}
	require.NoError(t, sf.ForeachSetting(func(s http2.Setting) error { out[s.ID] = s.Val; return nil }))
	return out
}

func TestLimits_AdvertisedInHTTP2Settings(t *testing.T) {
	p := newProbe(t, nil)
	_, fr := h2c(t, p.GRPCAddr().String())
	s := serverSettings(t, fr)
	require.Equal(t, uint32(config.DefaultMaxConcurrentStreams), s[http2.SettingMaxConcurrentStreams])
	require.Equal(t, uint32(config.DefaultMaxHeaderListSize), s[http2.SettingMaxHeaderListSize])

	require.Equal(t, uint32(config.DefaultInitialWindowSize), s[http2.SettingInitialWindowSize])

	p2 := newProbe(t, func(o *server.Options) {
		o.Limits.MaxConcurrentStreams, o.Limits.MaxHeaderListSize = 7, 16<<10
		o.Limits.InitialWindowSize = 128 << 10
	})
	_, fr2 := h2c(t, p2.GRPCAddr().String())
	s = serverSettings(t, fr2)
	require.Equal(t, uint32(7), s[http2.SettingMaxConcurrentStreams])
	require.Equal(t, uint32(16<<10), s[http2.SettingMaxHeaderListSize])
	require.Equal(t, uint32(128<<10), s[http2.SettingInitialWindowSize])
}

func TestLimits_RequestDeadlineIsCapped(t *testing.T) {
	p := newProbe(t, func(o *server.Options) { o.Limits.MaxRequestTimeout.Duration = 2 * time.Second })
	conn := dial(t, p.GRPCAddr().String())
	left := func(ctx context.Context) time.Duration {
		var d durationpb.Duration
		require.NoError(t, conn.Invoke(ctx, probeDeadline, &emptypb.Empty{}, &d))
		return d.AsDuration()
	}
	// No deadline from the caller: the cap applies.
	got := left(context.Background())
	require.LessOrEqual(t, got, 2*time.Second)
	require.Greater(t, got, time.Second)
	// A shorter deadline from the caller stays.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	require.LessOrEqual(t, left(ctx), 500*time.Millisecond)
	// A longer one is capped.
	ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	require.LessOrEqual(t, left(ctx), 2*time.Second)
}

// readUntilClosed reads until the server closes the connection and reports
// whether it did before the connection's deadline.
func closedByServer(c net.Conn) bool {
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestLimits_HandshakeTimeoutClosesSilentConnections(t *testing.T) {
	p := newProbe(t, func(o *server.Options) { o.Limits.HandshakeTimeout.Duration = 200 * time.Millisecond })
	c, err := net.Dial("tcp", p.GRPCAddr().String())
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	require.NoError(t, c.SetDeadline(start.Add(10*time.Second)))
	require.True(t, closedByServer(c), "a connection that never sends the preface must be closed")
	t.Logf("closed after %s", time.Since(start))
}

func TestLimits_MaxConnectionAgeSendsGoAway(t *testing.T) {
	p := newProbe(t, func(o *server.Options) {
		o.Limits.MaxConnectionAge.Duration = time.Second
		o.Limits.MaxConnectionAgeGrace.Duration = 100 * time.Millisecond
	})
	_, fr := h2c(t, p.GRPCAddr().String())
	start := time.Now()
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err, "GOAWAY expected before the connection ends")
		if g, ok := f.(*http2.GoAwayFrame); ok {
			require.Equal(t, http2.ErrCodeNo, g.ErrCode)
			t.Logf("GOAWAY after %s", time.Since(start))
			return
		}
	}
}

// A caller that announces a request message and never finishes sending it
// is answered DEADLINE_EXCEEDED once server.limits.maxRequestTimeout has
// passed, and its stream is closed: gRPC reads the message before any
// interceptor runs, so only a cap set when the headers arrive bounds it.
// Before, such a stream stayed open, and kept its connection from going
// idle, until maxConnectionAge.
func TestLimits_AHalfSentRequestIsAnsweredAtTheCap(t *testing.T) {
	p := newProbe(t, func(o *server.Options) { o.Limits.MaxRequestTimeout.Duration = 500 * time.Millisecond })
	c, fr := h2c(t, p.GRPCAddr().String())
	w := http2.NewFramer(c, nil) // unbuffered writes; fr reads
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", probeDeadline},
		{":authority", "meshca"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		require.NoError(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	require.NoError(t, w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}))
	// A gRPC message header announcing 1000 bytes, then 10 of them.
	require.NoError(t, w.WriteData(1, false, append([]byte{0, 0, 0, 0x03, 0xe8}, make([]byte, 10)...)))
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	start := time.Now()
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		require.NoError(t, err, "the stream is still open after %v", time.Since(start))
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				require.NoError(t, w.WriteSettingsAck())
			}
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			require.NoError(t, err)
			for _, h := range fields {
				if h.Name == "grpc-status" {
					require.Equal(t, "4", h.Value, "DEADLINE_EXCEEDED")
					require.True(t, f.StreamEnded())
					require.Less(t, time.Since(start), 3*time.Second)
					return
				}
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("reset (%v) before a status", f.ErrCode)
		}
	}
}

// The health Watch streams by design: the request cap does not end it.
func TestLimits_TheHealthWatchOutlivesTheRequestCap(t *testing.T) {
	p := newProbe(t, func(o *server.Options) { o.Limits.MaxRequestTimeout.Duration = 200 * time.Millisecond })
	w, err := healthpb.NewHealthClient(dial(t, p.GRPCAddr().String())).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first, err := w.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())
	ended := make(chan error, 1)
	go func() { _, err := w.Recv(); ended <- err }()
	select {
	case err := <-ended:
		t.Fatalf("the Watch ended: %v", err)
	case <-time.After(time.Second):
	}
}
