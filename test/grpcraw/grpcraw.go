// Package grpcraw is a gRPC codec for tests that put arbitrary bytes on the
// wire (oversize or malformed messages) and read replies undecoded.
package grpcraw

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Codec marshals a *[]byte as the message bytes themselves and unmarshals
// into a *[]byte; use it with grpc.ForceCodecV2(grpcraw.Codec{}).
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Marshal returns the bytes v points to.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

// Unmarshal stores the message bytes in v.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// Name is "proto", so that servers take the bytes as a protobuf message.
func (Codec) Name() string { return "proto" }
