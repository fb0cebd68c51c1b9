package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
)

// istioRequest is a well-formed CreateCertificate request for id.
func istioRequest(t *testing.T, id string) *pb.IstioCertificateRequest {
	t.Helper()
	csr, _ := agentStyleCSR(t, id)
	meta, err := structpb.NewStruct(map[string]any{"CertSigner": ""})
	require.NoError(t, err)
	return &pb.IstioCertificateRequest{Csr: string(csr), ValidityDuration: 3600, Metadata: meta}
}

func agentStyleCSR(t *testing.T, id string) ([]byte, []byte) {
	t.Helper()
	p, key := writeCSRWithKey(t, t.TempDir(), id)
	csr, err := os.ReadFile(p)
	require.NoError(t, err)
	return csr, key
}

// oversizeRequest is a CreateCertificate request whose encoding is n bytes.
func oversizeRequest(t *testing.T, n int) []byte {
	t.Helper()
	// Field 1 (csr), length-delimited: one tag byte, the varint length, the payload.
	l := n - 2
	for 1+protowire.SizeVarint(uint64(l))+l > n {
		l--
	}
	req := &pb.IstioCertificateRequest{Csr: strings.Repeat("A", l)}
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	require.Len(t, b, n)
	return b
}

// TestWire_BadClusterIDDoesNotCrash sends, over raw HTTP/2, a request with
// no credentials and a clusterid header that is not UTF-8 (HTTP/2 carries
// bytes 0x80-0xFF). meshca must answer Unauthenticated and keep serving.
func TestWire_BadClusterIDDoesNotCrash(t *testing.T) {
	w := newWireCA(t)
	s := startServe(t, w.dir)
	s.waitReady(t, 10*time.Second)

	msg, err := proto.Marshal(istioRequest(t, workloadID))
	require.NoError(t, err)
	got, err := rawH2Call(s.grpc, w.roots, createCertificate, [][2]string{{"clusterid", "\xff"}}, msg)
	require.NoError(t, err, s.logs())
	require.Equal(t, int(codes.Unauthenticated), got, "grpc-status")
	s.requireServing(t, w)
	// stderr is read by another goroutine.
	waitFor(t, 5*time.Second, "the authn_no_credentials audit line", func() bool {
		return strings.Contains(s.logs(), `"reason":"authn_no_credentials"`)
	})
}

// TestWire_ClusterLabelIsBounded sends unauthenticated requests with many
// distinct clusterid values: the cluster label of the request metric takes
// at most one value per configured cluster plus "unknown" (no cluster is
// configured here, so one).
func TestWire_ClusterLabelIsBounded(t *testing.T) {
	w := newWireCA(t)
	s := startServe(t, w.dir)
	s.waitReady(t, 10*time.Second)
	client := pb.NewIstioCertificateServiceClient(w.dial(t, s.grpc, nil))
	req := istioRequest(t, workloadID)
	for i := range 25 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "clusterid", "attacker-"+strings.Repeat("x", i))
		_, err := client.CreateCertificate(ctx, req)
		cancel()
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	}
	m := s.metrics(t)
	require.Equal(t, 25.0, sum(m, "meshca_istio_requests_total"))
	require.Equal(t, []string{"unknown"}, labelValues(m, "meshca_istio_requests_total", "cluster"))
	for k := range m {
		require.NotContains(t, k, "attacker-", "caller input became a label")
	}
}

// TestWire_NegativeRequests drives the running binary over the network with
// requests that must all be refused: each gets its exact gRPC code, the
// process keeps serving and nothing is issued or recorded.
func TestWire_NegativeRequests(t *testing.T) {
	w := newWireCA(t)
	s := startServe(t, w.dir)
	s.waitReady(t, 10*time.Second)
	now := time.Now()
	valid := func(uris ...string) func(*testing.T) error {
		return func(t *testing.T) error {
			cert := w.clientCert(t, uris, now.Add(-time.Minute), now.Add(time.Hour))
			_, err := pb.NewIstioCertificateServiceClient(w.dial(t, s.grpc, cert)).CreateCertificate(ctx(t), istioRequest(t, workloadID))
			return err
		}
	}
	cases := []struct {
		name   string
		call   func(t *testing.T) error
		code   codes.Code
		reason string // the audit line's reason, when the service sees the request
	}{{
		name: "no credentials",
		call: func(t *testing.T) error {
			_, err := pb.NewIstioCertificateServiceClient(w.dial(t, s.grpc, nil)).CreateCertificate(ctx(t), istioRequest(t, workloadID))
			return err
		},
		code: codes.Unauthenticated, reason: "authn_no_credentials",
	}, {
		name: "client certificate chains to the root but is not in the store",
		call: valid(workloadID),
		code: codes.Unauthenticated, reason: "authn_unknown_certificate",
	}, {
		name: "expired client certificate",
		call: func(t *testing.T) error {
			cert := w.clientCert(t, []string{workloadID}, now.Add(-2*time.Hour), now.Add(-time.Hour))
			_, err := pb.NewIstioCertificateServiceClient(w.dial(t, s.grpc, cert)).CreateCertificate(ctx(t), istioRequest(t, workloadID))
			return err
		},
		code: codes.Unauthenticated, reason: "authn_untrusted_certificate",
	}, {
		name: "client certificate with two URI SANs",
		call: valid(workloadID, "spiffe://cluster.local/ns/default/sa/other"),
		code: codes.Unauthenticated, reason: "authn_no_identity",
	}, {
		name: "client certificate of a foreign trust domain",
		call: valid("spiffe://foreign.example/ns/default/sa/app"),
		code: codes.Unauthenticated, reason: "authn_no_identity",
	}, {
		name: "clusterid that is not UTF-8",
		call: func(t *testing.T) error {
			msg, err := proto.Marshal(istioRequest(t, workloadID))
			require.NoError(t, err)
			got, err := rawH2Call(s.grpc, w.roots, createCertificate, [][2]string{{"clusterid", "bad\xff\x80"}}, msg)
			if err != nil {
				return err
			}
			return status.Error(codes.Code(got), "raw HTTP/2")
		},
		code: codes.Unauthenticated, reason: "authn_no_credentials",
	}, {
		name: "message of 4 MiB",
		call: func(t *testing.T) error {
			return invokeRaw(ctx(t), w.dial(t, s.grpc, nil), oversizeRequest(t, 4<<20-64))
		},
		code: codes.ResourceExhausted,
	}, {
		name: "message one byte over the limit",
		call: func(t *testing.T) error {
			return invokeRaw(ctx(t), w.dial(t, s.grpc, nil), oversizeRequest(t, 128<<10+1))
		},
		code: codes.ResourceExhausted,
	}, {
		name: "garbage protobuf",
		call: func(t *testing.T) error {
			return invokeRaw(ctx(t), w.dial(t, s.grpc, nil), []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a})
		},
		// grpc-go answers a message it cannot decode with Internal before
		// the service sees it.
		code: codes.Internal,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(s.logs(), `"reason":"`+tc.reason+`"`)
			err := tc.call(t)
			require.Equal(t, tc.code, status.Code(err), "%v\n%s", err, s.logs())
			s.requireServing(t, w)
			if tc.reason != "" {
				require.Eventually(t, func() bool {
					return strings.Count(s.logs(), `"reason":"`+tc.reason+`"`) == before+1
				}, 5*time.Second, 10*time.Millisecond, "audit reason %s:\n%s", tc.reason, s.logs())
			}
			m := s.metrics(t)
			require.Zero(t, sum(m, "meshca_certificates_issued_total"), "nothing is issued")
			require.Zero(t, sum(m, "meshca_grpc_panics_total"), "no panic")
		})
	}
	// Nothing was recorded: stop the service and read the store with the CLI.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-s.done, s.logs())
	s.done <- nil
	require.Zero(t, workloadRecords(t, w.dir))
}

// TestWire_OversizeMessagesDoNotGrowMemory sends 4 MiB requests, many at
// once: each is refused with ResourceExhausted before it is decoded, so the
// server's resident memory does not grow with them.
func TestWire_OversizeMessagesDoNotGrowMemory(t *testing.T) {
	w := newWireCA(t)
	s := startServe(t, w.dir)
	s.waitReady(t, 10*time.Second)
	conn := w.dial(t, s.grpc, nil)
	msg := oversizeRequest(t, 4<<20-64)
	send := func() {
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Go(func() { errs[i] = invokeRaw(ctx(t), conn, msg) })
		}
		wg.Wait()
		for _, err := range errs {
			require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
		}
	}
	send() // warm up connection buffers
	before := rssBytes(t, s.cmd.Process.Pid)
	for range 4 {
		send()
	}
	after := rssBytes(t, s.cmd.Process.Pid)
	t.Logf("RSS %d MiB before, %d MiB after 64 requests of 4 MiB", before>>20, after>>20)
	require.Less(t, after-before, int64(24<<20), "RSS grew by %d MiB", (after-before)>>20)
	s.requireServing(t, w)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestWire_MessageLimitFollowsTheFlag raises server.limits.maxRecvMsgSize
// with --max-recv-msg-size: a request under the new limit reaches the
// service (and is refused there for lack of credentials), one over it is
// refused by the transport.
func TestWire_MessageLimitFollowsTheFlag(t *testing.T) {
	w := newWireCA(t)
	s := startServe(t, w.dir, "--max-recv-msg-size", "262144")
	s.waitReady(t, 10*time.Second)
	conn := w.dial(t, s.grpc, nil)
	err := invokeRaw(ctx(t), conn, oversizeRequest(t, 200<<10))
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	err = invokeRaw(ctx(t), conn, oversizeRequest(t, 256<<10+1))
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	s.requireServing(t, w)
}

// TestWire_RapidResetClosesTheConnection opens streams over TLS and
// cancels each at once (HTTP/2 "rapid reset", CVE-2023-44487), without
// credentials: past server.limits.maxStreamResetBurst the connection is
// closed and counted, and the server goes on serving.
func TestWire_RapidResetClosesTheConnection(t *testing.T) {
	w := newWireCA(t)
	s := startServe(t, w.dir)
	s.waitReady(t, 10*time.Second)

	conn, err := tls.Dial("tcp", s.grpc, &tls.Config{RootCAs: w.roots, ServerName: servingName, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, h := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", createCertificate},
		{":authority", servingName}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		require.NoError(t, enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}))
	}
	_, err = conn.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	fr := http2.NewFramer(conn, conn)
	require.NoError(t, fr.WriteSettings())
	closed := make(chan error, 1)
	go func() {
		rd := http2.NewFramer(nil, conn)
		for {
			if _, err := rd.ReadFrame(); err != nil {
				closed <- err
				return
			}
		}
	}()
	const pairs = 20000
	sent := 0
	for id := uint32(1); sent < pairs; id += 2 {
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndHeaders: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
		sent++
	}
	err = <-closed
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was still open after %d resets", sent)
	t.Logf("closed by the server (%v); %d streams opened and reset before writes failed", err, sent)
	s.waitMetrics(t, 5*time.Second, map[string]float64{`meshca_grpc_connections_closed_total{reason="stream_resets"}`: 1})
	// Logged after the count, through the process's stderr.
	waitFor(t, 5*time.Second, "the close is logged", func() bool {
		return strings.Contains(s.logs(), `"msg":"closing a connection that resets too many streams"`)
	})
	// The budget was the connection's: a new connection of the address
	// is served (its new connections are refused only after three closes).
	s.requireServing(t, w)
}
