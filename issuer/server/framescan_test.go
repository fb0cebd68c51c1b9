package server

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// The scanner finds the RST_STREAM frames of a client's byte stream
// however it is cut: at every byte, or in random pieces.
func TestFrameScanner_CountsResetsAcrossAnyCuts(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	require.NoError(t, fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
	want := 0
	for id := uint32(1); id < 200; id += 2 {
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: bytes.Repeat([]byte{0x82}, int(id)), EndHeaders: true}))
		// A DATA frame whose payload holds RST_STREAM's type byte at
		// a header's offset: payloads are skipped, not read.
		require.NoError(t, fr.WriteData(id, false, bytes.Repeat([]byte{0, 0, 4, 3, 0, 0, 0, 0, 1}, 3)))
		if id%3 == 0 {
			require.NoError(t, fr.WriteRSTStream(id, http2.ErrCodeCancel))
			want++
		}
	}
	require.NoError(t, fr.WritePing(false, [8]byte{}))
	stream := b.Bytes()

	s := frameScanner{preface: len(http2.ClientPreface), everyCode: true}
	got := 0
	for i := range stream {
		got += s.scan(stream[i : i+1])
	}
	require.Equal(t, want, got, "one byte at a time")

	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		s := frameScanner{preface: len(http2.ClientPreface), everyCode: true}
		got, rest := 0, stream
		for len(rest) > 0 {
			n := min(len(rest), 1+r.IntN(64))
			got += s.scan(rest[:n])
			rest = rest[n:]
		}
		require.Equal(t, want, got, "seed %d", seed)
		require.Zero(t, s.nhdr+s.payload, "ends at a frame boundary")
	}
	// The server's direction has no preface, and its NO_ERROR resets (a
	// stream answered before the client finished sending) and
	// REFUSED_STREAM resets do not count, however the error code is cut.
	var out bytes.Buffer
	sf := http2.NewFramer(&out, nil)
	require.NoError(t, sf.WriteSettings())
	require.NoError(t, sf.WriteRSTStream(1, http2.ErrCodeRefusedStream))
	require.NoError(t, sf.WriteRSTStream(3, http2.ErrCodeNo))
	require.NoError(t, sf.WriteData(5, true, []byte{0, 0, 0, 0}))
	require.NoError(t, sf.WriteRSTStream(5, http2.ErrCodeNo))
	require.NoError(t, sf.WriteRSTStream(7, http2.ErrCodeInternal))
	require.NoError(t, sf.WriteRSTStream(9, http2.ErrCodeProtocol))
	require.Equal(t, 2, (&frameScanner{}).scan(out.Bytes()))
	server := frameScanner{}
	got = 0
	for i := range out.Len() {
		got += server.scan(out.Bytes()[i : i+1])
	}
	require.Equal(t, 2, got, "one byte at a time")
	// A client's NO_ERROR resets count: it chooses the code.
	client := frameScanner{everyCode: true}
	require.Equal(t, 5, client.scan(out.Bytes()))
}
