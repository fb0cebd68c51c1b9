package composite

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/cloudflare/circl/sign/ed448"
)

var (
	// ErrMalformedPublicKey: the composite public key cannot be split or a
	// component does not parse.
	ErrMalformedPublicKey = errors.New("composite: malformed public key")
	// ErrCompressedPoint: the ECDSA component is a compressed EC point; the
	// draft requires the uncompressed X9.62 form (leading 0x04).
	ErrCompressedPoint = errors.New("composite: ECDSA public key is a compressed point; draft-19 requires uncompressed (0x04)")
)

// parseTraditionalPublicKey parses the traditional half of a composite
// public key.
func (a *Algorithm) parseTraditionalPublicKey(raw []byte) (crypto.PublicKey, error) {
	switch a.kind {
	case tradECDSA:
		if len(raw) > 0 && (raw[0] == 0x02 || raw[0] == 0x03) {
			return nil, fmt.Errorf("%w (%s)", ErrCompressedPoint, a.name)
		}
		if len(raw) != 1+2*a.coord || raw[0] != 0x04 {
			return nil, fmt.Errorf("%w: %s: ECDSA point is %d bytes with prefix %#x, want %d bytes starting 0x04",
				ErrMalformedPublicKey, a.name, len(raw), firstByte(raw), 1+2*a.coord)
		}
		pub, err := parseECPoint(a.curve, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformedPublicKey, a.name, err)
		}
		return pub, nil
	case tradEd25519:
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: %s: Ed25519 key is %d bytes, want 32", ErrMalformedPublicKey, a.name, len(raw))
		}
		return ed25519.PublicKey(append([]byte(nil), raw...)), nil
	case tradEd448:
		if len(raw) != ed448.PublicKeySize {
			return nil, fmt.Errorf("%w: %s: Ed448 key is %d bytes, want %d", ErrMalformedPublicKey, a.name, len(raw), ed448.PublicKeySize)
		}
		return ed448.PublicKey(append([]byte(nil), raw...)), nil
	case tradRSAPKCS1, tradRSAPSS:
		pub, err := x509.ParsePKCS1PublicKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: RSAPublicKey: %v", ErrMalformedPublicKey, a.name, err)
		}
		if pub.N.BitLen() != a.rsaBits {
			return nil, fmt.Errorf("%w: %s: RSA modulus is %d bits, want %d", ErrMalformedPublicKey, a.name, pub.N.BitLen(), a.rsaBits)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("composite: %s: unknown traditional algorithm", a.name)
}

// parseECPoint parses an uncompressed X9.62 point (SEC 1 section 2.3.4).
// The NIST curves go through crypto/ecdsa's own parser; the brainpool
// curves, which crypto/ecdsa verifies only through its generic
// elliptic.Curve path, are range- and on-curve-checked here.
func parseECPoint(curve elliptic.Curve, raw []byte) (*ecdsa.PublicKey, error) {
	switch curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
		return ecdsa.ParseUncompressedPublicKey(curve, raw)
	}
	params := curve.Params()
	size := (params.BitSize + 7) / 8
	if len(raw) != 1+2*size || raw[0] != 0x04 {
		return nil, errors.New("not an uncompressed point")
	}
	x, y := new(big.Int).SetBytes(raw[1:1+size]), new(big.Int).SetBytes(raw[1+size:])
	//lint:ignore SA1019 brainpool is only available as an elliptic.Curve; IsOnCurve is its point validation
	if x.Cmp(params.P) >= 0 || y.Cmp(params.P) >= 0 || !curve.IsOnCurve(x, y) {
		return nil, errors.New("point is not on the curve")
	}
	//lint:ignore SA1019 crypto/ecdsa verifies custom curves only from the X, Y coordinates
	return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// verifyTraditional checks the traditional component signature over M'.
func (a *Algorithm) verifyTraditional(pub crypto.PublicKey, mPrime, sig []byte) error {
	digest := func() []byte {
		h := a.hash.New()
		h.Write(mPrime)
		return h.Sum(nil)
	}
	switch a.kind {
	case tradECDSA:
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest(), sig) {
			return errors.New("ECDSA signature does not verify")
		}
	case tradEd25519:
		if !ed25519.Verify(pub.(ed25519.PublicKey), mPrime, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
	case tradEd448:
		// draft-ietf-lamps-pq-composite-sigs-19 section 4: pure Ed448
		// (RFC 8032) over M' with an empty Ed448 context.
		if !ed448.Verify(pub.(ed448.PublicKey), mPrime, sig, "") {
			return errors.New("Ed448 signature does not verify")
		}
	case tradRSAPKCS1:
		if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), a.hash, digest(), sig); err != nil {
			return fmt.Errorf("RSASSA-PKCS1-v1_5: %w", err)
		}
	case tradRSAPSS:
		opts := &rsa.PSSOptions{SaltLength: a.salt, Hash: a.hash}
		if err := rsa.VerifyPSS(pub.(*rsa.PublicKey), a.hash, digest(), sig, opts); err != nil {
			return fmt.Errorf("RSASSA-PSS: %w", err)
		}
	default:
		return fmt.Errorf("composite: %s: unknown traditional algorithm", a.name)
	}
	return nil
}
