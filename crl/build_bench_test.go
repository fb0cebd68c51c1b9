package crl_test

import (
	"testing"
	"time"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// BenchmarkBuild100k builds a classical CRL of 100k entries shaped like
// meshca's (16-octet serials); make bench has the comparison with the
// standard library.
func BenchmarkBuild100k(b *testing.B) {
	ca := newBuildCA(b, "classical")
	p := crl.Params{Issuer: ca.cert, Number: 1, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	at := thisUpdate.Add(-time.Hour)
	src := func(yield func(crl.Entry) bool) error {
		var serial [16]byte
		for i := range 100_000 {
			serial[0], serial[14], serial[15] = 0x12, byte(i>>8), byte(i)
			if !yield(crl.Entry{Serial: serial[:], RevokedAt: at.Add(time.Duration(i) * time.Second), Reason: store.Reason(i % 2)}) {
				return nil
			}
		}
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := crl.Build(p, src, ca.signer()); err != nil {
			b.Fatal(err)
		}
	}
}
