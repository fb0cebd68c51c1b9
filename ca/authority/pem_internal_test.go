package authority

import (
	"crypto/rand"
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/require"
)

// certificatePEM is byte-identical to encoding/pem for every length around
// the line and base64 block boundaries.
func TestCertificatePEM_IsWhatEncodingPEMWrites(t *testing.T) {
	for n := 1; n <= 300; n++ {
		der := make([]byte, n)
		_, err := rand.Read(der)
		require.NoError(t, err)
		require.Equal(t, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), certificatePEM(der), "length %d", n)
	}
}

func BenchmarkCertificatePEM(b *testing.B) {
	der := make([]byte, 700) // a workload leaf
	b.Run("encoding/pem", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		}
	})
	b.Run("certificatePEM", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = certificatePEM(der)
		}
	})
}
