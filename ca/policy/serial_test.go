package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// derIntegerContent is the content octets of serial's DER INTEGER.
func derIntegerContent(t *testing.T, n *big.Int) []byte {
	t.Helper()
	der, err := asn1.Marshal(n)
	require.NoError(t, err)
	var raw asn1.RawValue
	_, err = asn1.Unmarshal(der, &raw)
	require.NoError(t, err)
	require.Equal(t, asn1.TagInteger, raw.Tag)
	return raw.Bytes
}

func TestRandomSerial_PositiveAtMost20OctetsAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		n, err := RandomSerial()
		require.NoError(t, err)
		// RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets.
		require.Equal(t, 1, n.Sign())
		content := derIntegerContent(t, n)
		require.LessOrEqual(t, len(content), 20)
		require.Zero(t, content[0]&0x80, "the DER INTEGER must not be negative")
		require.False(t, seen[n.String()], "serial repeated")
		seen[n.String()] = true
	}
	tmpl := &x509.Certificate{}
	require.NoError(t, randomSerial{}.Modify(tmpl, &Request{}, nil))
	require.Equal(t, 1, tmpl.SerialNumber.Sign())
}

// The store keys issuance records by the serial's bytes (lower-case hex of
// big.Int.Bytes, decoded): serials made later must sort after earlier ones,
// byte-wise, so that inserts append at the right edge of the B+tree.
func TestRandomSerial_LaterSerialsSortAfterEarlierOnes(t *testing.T) {
	prev, err := RandomSerial()
	require.NoError(t, err)
	for i := range 50 {
		time.Sleep(2 * time.Millisecond)
		next, err := RandomSerial()
		require.NoError(t, err)
		pk, nk := prev.Bytes(), next.Bytes()
		require.Equal(t, 1, next.Cmp(prev), "serial %d is not greater than the one 2 ms before it", i)
		require.Equal(t, len(pk), len(nk), "serials of one era have one length")
		require.Equal(t, 1, bytes.Compare(nk, pk), "serial %d does not sort after the one before it", i)
		require.Greater(t, hex.EncodeToString(nk), hex.EncodeToString(pk))
		prev = next
	}
}

// CA/Browser Forum Baseline Requirements §7.1: at least 64 bits of CSPRNG
// output. The low 64 bits of serials made within one millisecond must look
// uniformly random: every bit set in about half of them, none repeated.
func TestRandomSerial_Low64BitsAreRandom(t *testing.T) {
	const samples = 4000
	var ones [64]int
	seen := map[uint64]bool{}
	mask := new(big.Int).SetUint64(^uint64(0))
	for range samples {
		n, err := RandomSerial()
		require.NoError(t, err)
		low := new(big.Int).And(n, mask).Uint64()
		require.False(t, seen[low], "low 64 bits repeated")
		seen[low] = true
		for b := range 64 {
			ones[b] += int(low >> b & 1)
		}
	}
	// Binomial(4000, 1/2) has a standard deviation of ~32: 1600..2400 is
	// over 12 deviations either side.
	for b, c := range ones {
		require.True(t, c > 1600 && c < 2400, "bit %d was set in %d of %d serials", b, c, samples)
	}
}

func TestSerialAt_IsTheMillisecondTimestampThenTheRandomOctets(t *testing.T) {
	now := time.Date(2026, time.May, 1, 12, 0, 0, 123_456_789, time.UTC) // 1777636800123 ms = 0x019de368f67b
	random := []byte{0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66}
	n, err := serialAt(now, bytes.NewReader(random))
	require.NoError(t, err)
	require.Equal(t, "019de368f67b"+"ffeeddccbbaa99887766", hex.EncodeToString(n.Bytes()))
	require.Equal(t, int64(0x019de368f67b), now.UnixMilli())
}

func TestSerialAt_ALaterMillisecondSortsAfterAnyRandomPart(t *testing.T) {
	now := time.Date(2026, time.May, 1, 12, 0, 0, 0, time.UTC)
	early, err := serialAt(now, bytes.NewReader(bytes.Repeat([]byte{0xff}, 10)))
	require.NoError(t, err)
	late, err := serialAt(now.Add(time.Millisecond), bytes.NewReader(make([]byte, 10)))
	require.NoError(t, err)
	require.Equal(t, 1, late.Cmp(early))
	require.Equal(t, 1, bytes.Compare(late.Bytes(), early.Bytes()))
}

func TestSerialAt_StaysPositiveAndRetriesAnAllZeroSerial(t *testing.T) {
	// At the epoch with all-zero random octets the serial would be 0, which
	// RFC 5280 §4.1.2.2 forbids: the next 10 random octets are used.
	random := append(make([]byte, 10), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
	n, err := serialAt(time.Unix(0, 0), bytes.NewReader(random))
	require.NoError(t, err)
	require.Equal(t, int64(1), n.Int64())
	// Far in the future the top bit of the first octet is still clear.
	n, err = serialAt(time.UnixMilli(1<<48-1), bytes.NewReader(make([]byte, 10)))
	require.NoError(t, err)
	content := derIntegerContent(t, n)
	require.Len(t, content, 16)
	require.Equal(t, byte(0x7f), content[0])
}

func TestSerialAt_FailsWhenTheRandomSourceFails(t *testing.T) {
	_, err := serialAt(time.Now(), bytes.NewReader(make([]byte, 9)))
	require.Error(t, err)
}
