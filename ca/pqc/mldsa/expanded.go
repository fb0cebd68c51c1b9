package mldsa

import (
	"crypto/sha3"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Errors for private keys that RFC 9881 says a parser must reject.
var (
	// ErrMalformedPrivateKey: the encoding is not a valid ML-DSA-PrivateKey.
	ErrMalformedPrivateKey = errors.New("mldsa: malformed private key")
	// ErrSeedMismatch: a "both" key whose expandedKey is not the one the
	// seed derives.
	ErrSeedMismatch = errors.New("mldsa: expandedKey does not match the seed")
	// ErrExpandedKeyInconsistent: an expanded key that is not internally
	// consistent. One of the three errors below is always wrapped with it.
	ErrExpandedKeyInconsistent = errors.New("mldsa: inconsistent expanded private key")
	// ErrCoefficientOutOfRange: an s1 or s2 coefficient outside [-η, η].
	ErrCoefficientOutOfRange = errors.New("s1/s2 coefficient outside [-eta, eta]")
	// ErrT0Mismatch: t0 differs from the low bits of A·s1 + s2.
	ErrT0Mismatch = errors.New("t0 does not match A*s1+s2")
	// ErrTRMismatch: tr is not SHAKE256 of the derived public key.
	ErrTRMismatch = errors.New("tr is not the hash of the derived public key")
)

// The checks below re-derive the public key from an expanded private key
// with plain FIPS 204 arithmetic (Algorithms 24, 30, 32, 35, 41, 42). They
// run once per key import, so they favour clarity over speed; they use
// variable-time modular reduction on secret coefficients, which is
// acceptable for a one-off import check and is never used for signing.

const (
	q = 8380417
	n = 256
	d = 13
)

var zetas = func() (z [n]uint64) {
	for i := range n {
		z[i] = powMod(1753, uint64(bitrev8(uint8(i))))
	}
	return z
}()

func bitrev8(x uint8) uint8 {
	var r uint8
	for range 8 {
		r = r<<1 | x&1
		x >>= 1
	}
	return r
}

func powMod(b, e uint64) uint64 {
	r := uint64(1)
	b %= q
	for e > 0 {
		if e&1 == 1 {
			r = r * b % q
		}
		b = b * b % q
		e >>= 1
	}
	return r
}

type poly [n]uint64 // coefficients in [0, q)

func ntt(w *poly) {
	m := 0
	for length := 128; length >= 1; length /= 2 {
		for start := 0; start < n; start += 2 * length {
			m++
			z := zetas[m]
			for j := start; j < start+length; j++ {
				t := z * w[j+length] % q
				w[j+length] = (w[j] + q - t) % q
				w[j] = (w[j] + t) % q
			}
		}
	}
}

func invNTT(w *poly) {
	m := n
	for length := 1; length < n; length *= 2 {
		for start := 0; start < n; start += 2 * length {
			m--
			z := q - zetas[m]
			for j := start; j < start+length; j++ {
				t := w[j]
				w[j] = (t + w[j+length]) % q
				w[j+length] = z * ((t + q - w[j+length]) % q) % q
			}
		}
	}
	const f = 8347681 // 256^-1 mod q
	for j := range w {
		w[j] = w[j] * f % q
	}
}

// rejNTTPoly samples one NTT-domain entry of A from SHAKE128(rho||s||r).
func rejNTTPoly(rho []byte, s, r byte) poly {
	h := sha3.NewSHAKE128()
	_, _ = h.Write(rho)
	_, _ = h.Write([]byte{s, r})
	var a poly
	var buf [3]byte
	for j := 0; j < n; {
		_, _ = h.Read(buf[:])
		z := uint64(buf[0]) | uint64(buf[1])<<8 | uint64(buf[2]&0x7f)<<16
		if z < q {
			a[j] = z
			j++
		}
	}
	return a
}

// bitUnpack reads 256 little-endian w-bit values.
func bitUnpack(b []byte, w int) (out [n]uint32) {
	for i := range n {
		var v uint32
		for k := range w {
			idx := i*w + k
			v |= uint32(b[idx/8]>>(idx%8)&1) << k
		}
		out[i] = v
	}
	return out
}

func bitPack(vals *[n]uint32, w int) []byte {
	out := make([]byte, n*w/8)
	for i := range n {
		for k := range w {
			idx := i*w + k
			out[idx/8] |= byte(vals[i]>>k&1) << (idx % 8)
		}
	}
	return out
}

func bitLen(x int) int {
	l := 0
	for ; x > 0; x >>= 1 {
		l++
	}
	return l
}

// checkExpandedKey runs the RFC 9881 / FIPS 204 consistency checks on an
// expanded key of the right length and returns the derived public key.
func checkExpandedKey(p *ParameterSet, sk []byte) ([]byte, error) {
	rho, tr := sk[0:32], sk[64:128]
	etaBytes := n * bitLen(2*p.eta) / 8
	off := 128
	readEta := func(count int) ([]poly, error) {
		out := make([]poly, count)
		for i := range count {
			raw := bitUnpack(sk[off:off+etaBytes], bitLen(2*p.eta))
			off += etaBytes
			for j, v := range raw {
				if int(v) > 2*p.eta {
					return nil, fmt.Errorf("%w: %w", ErrExpandedKeyInconsistent, ErrCoefficientOutOfRange)
				}
				out[i][j] = uint64(q+p.eta-int(v)) % q
			}
		}
		return out, nil
	}
	s1, err := readEta(p.l)
	if err != nil {
		return nil, err
	}
	s2, err := readEta(p.k)
	if err != nil {
		return nil, err
	}
	t0Bytes := n * d / 8
	storedT0 := make([][n]uint32, p.k)
	for i := range p.k {
		storedT0[i] = bitUnpack(sk[off:off+t0Bytes], d)
		off += t0Bytes
	}

	s1Hat := make([]poly, p.l)
	for j := range p.l {
		s1Hat[j] = s1[j]
		ntt(&s1Hat[j])
	}
	pub := make([]byte, 0, p.publicKeySize)
	pub = append(pub, rho...)
	t0Equal := 1
	for i := range p.k {
		var acc poly
		for j := range p.l {
			a := rejNTTPoly(rho, byte(j), byte(i))
			for c := range n {
				acc[c] = (acc[c] + a[c]*s1Hat[j][c]) % q
			}
		}
		invNTT(&acc)
		var t1, t0 [n]uint32
		for c := range n {
			t := (acc[c] + s2[i][c]) % q
			// Power2Round: t = t1*2^d + r0 with r0 in (-2^(d-1), 2^(d-1)].
			r0 := int64(t & (1<<d - 1))
			if r0 > 1<<(d-1) {
				r0 -= 1 << d
			}
			t1[c] = uint32((int64(t) - r0) >> d)
			t0[c] = uint32(1<<(d-1) - r0) // the skEncode form of t0
		}
		t0Equal &= subtle.ConstantTimeCompare(bitPack(&t0, d), bitPack(&storedT0[i], d))
		pub = append(pub, bitPack(&t1, 10)...)
	}
	if t0Equal != 1 {
		return nil, fmt.Errorf("%w: %w", ErrExpandedKeyInconsistent, ErrT0Mismatch)
	}
	wantTR := sha3.SumSHAKE256(pub, 64)
	if subtle.ConstantTimeCompare(wantTR, tr) != 1 {
		return nil, fmt.Errorf("%w: %w", ErrExpandedKeyInconsistent, ErrTRMismatch)
	}
	return pub, nil
}
