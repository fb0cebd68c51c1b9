package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"

	"github.com/meshca/meshca/ca/config"
)

// limitOptions turns server.limits into gRPC server options: every cost a
// caller can cause before (and after) authentication is bounded.
func limitOptions(l config.LimitsConfig) []grpc.ServerOption {
	return []grpc.ServerOption{
		// Requests run on a pool of long-lived goroutines whose stacks
		// have already grown to what signing needs, instead of a new
		// goroutine (and stack growth) per request; when every worker is
		// busy gRPC starts a goroutine as before, so this is not a limit.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxHeaderListSize(uint32(l.MaxHeaderListSize)),
		grpc.MaxConcurrentStreams(uint32(l.MaxConcurrentStreams)),
		// Fixed flow-control windows (RFC 9113 section 6.9.2) bound the
		// request data a client may send ahead of meshca reading it; they
		// also turn off gRPC's BDP estimation, which would grow the
		// windows for any client that asks.
		grpc.InitialWindowSize(int32(l.InitialWindowSize)),
		grpc.InitialConnWindowSize(int32(l.InitialConnWindowSize)),
		grpc.ConnectionTimeout(l.HandshakeTimeout.Duration),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  l.KeepaliveTime.Duration,
			Timeout:               l.KeepaliveTimeout.Duration,
			MaxConnectionIdle:     l.MaxConnectionIdle.Duration,
			MaxConnectionAge:      l.MaxConnectionAge.Duration,
			MaxConnectionAgeGrace: l.MaxConnectionAgeGrace.Duration,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: l.KeepaliveMinTime.Duration,
			// Clients may keep an idle connection alive with pings, as
			// istio-agent and ztunnel connections to istiod do.
			PermitWithoutStream: true,
		}),
	}
}

// streamWorkers is the size of that pool: enough for the requests a
// 2-core replica has in flight (most wait on the store's group commit).
const streamWorkers = 64

// requestDeadline caps the deadline of every request of a unary method at
// max from the moment its headers arrive; a caller's shorter deadline
// (grpc-timeout) stays. It is a tap, not an interceptor, because gRPC reads
// the request message before any interceptor runs: a cap set there does not
// bound a caller that announces a message and never finishes sending it,
// which would hold its stream, and keep its connection from going idle,
// until maxConnectionAge. At the deadline the read fails and the stream is
// answered DEADLINE_EXCEEDED and closed. Methods that stream (the health
// Watch) are long-lived by design and are not capped; streaming(method)
// says which they are. The timer ends with the stream at the latest: the
// transport cancels the stream's context, the parent of this one, when the
// stream is done.
func requestDeadline(max time.Duration, streaming func(method string) bool) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if streaming(info.FullMethodName) {
			return ctx, nil
		}
		ctx, cancel := context.WithTimeout(ctx, max)
		_ = cancel // called by the stream's end, through the parent
		return ctx, nil
	}
}
