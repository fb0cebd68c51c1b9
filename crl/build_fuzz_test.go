package crl_test

import (
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// fuzzEntries decodes data as entries: per entry one octet of serial
// length (mod 24), the serial, one octet of reason (mod 12), and four
// octets of seconds for the revocation time (and its invalidity date
// when the reason octet is odd). It also returns whether crl.Build must
// accept them.
func fuzzEntries(data []byte) ([]crl.Entry, bool) {
	var es []crl.Entry
	valid := true
	base := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC)
	for len(data) > 0 {
		n := int(data[0]) % 24
		data = data[1:]
		if len(data) < n+5 {
			break
		}
		e := crl.Entry{Serial: data[:n:n], Reason: store.Reason(data[n] % 12)}
		secs := binary.BigEndian.Uint32(data[n+1:])
		e.RevokedAt = time.Unix(base.Unix()+int64(secs)*37, 0).UTC() // 1940 .. 6980: both time forms
		if data[n]%2 == 1 {
			e.InvalidityDate = e.RevokedAt.Add(-time.Duration(secs%1000) * time.Hour)
		}
		data = data[n+5:]
		mag := new(big.Int).SetBytes(e.Serial).Bytes()
		if len(e.Serial) == 0 || len(mag) > 20 || e.Reason == 7 || e.Reason > 10 {
			valid = false
		}
		es = append(es, e)
	}
	return es, valid
}

// FuzzBuild: whatever the serials, reasons and times, Build either
// refuses them or makes a CRL that crypto/x509 parses back exactly.
func FuzzBuild(f *testing.F) {
	ca := newBuildCA(f, "classical")
	f.Add([]byte{1, 0x80, 1, 0, 0, 0, 1})
	f.Add([]byte{20, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7, 0xf6, 0xf5, 0xf4, 0xf3, 0xf2, 0xf1, 0xf0, 0xef, 0xee, 0xed, 0xec, 4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{3, 0, 0, 0, 0, 0x10, 0, 0, 0, 2, 0, 1, 9, 1, 2, 3, 4})
	f.Add([]byte{0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		es, valid := fuzzEntries(data)
		der, err := crl.Build(crl.Params{Issuer: ca.cert, Number: 3, ThisUpdate: thisUpdate, NextUpdate: nextUpdate}, entriesOf(es...), ca.signer())
		if !valid {
			require.Error(t, err)
			require.Nil(t, der)
			return
		}
		require.NoError(t, err)
		rl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, rl.CheckSignatureFrom(ca.cert))
		require.Len(t, rl.RevokedCertificateEntries, len(es))
		for i, e := range es {
			g := rl.RevokedCertificateEntries[i]
			require.Equal(t, new(big.Int).SetBytes(e.Serial), g.SerialNumber)
			require.Equal(t, e.RevokedAt.UTC(), g.RevocationTime)
			require.Equal(t, int(e.Reason), g.ReasonCode)
			n := 0
			if e.Reason != 0 {
				n++
			}
			if !e.InvalidityDate.IsZero() {
				n++
			}
			require.Len(t, g.Extensions, n)
		}
	})
}
