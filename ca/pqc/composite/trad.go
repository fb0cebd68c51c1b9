package composite

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
)

var (
	// ErrMalformedPublicKey: the composite public key cannot be split or a
	// component does not parse.
	ErrMalformedPublicKey = errors.New("composite: malformed public key")
	// ErrCompressedPoint: the ECDSA component is a compressed EC point; the
	// draft requires the uncompressed X9.62 form (leading 0x04).
	ErrCompressedPoint = errors.New("composite: ECDSA public key is a compressed point; draft-19 requires uncompressed (0x04)")
)

const ed448PublicKeySize = 57

// parseTraditionalPublicKey parses the traditional half of a composite
// public key. For unsupported algorithms the structure is still checked
// and nil is returned as the key.
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
		if a.curve == nil {
			return nil, nil
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(a.curve, raw)
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
		if len(raw) != ed448PublicKeySize {
			return nil, fmt.Errorf("%w: %s: Ed448 key is %d bytes, want 57", ErrMalformedPublicKey, a.name, len(raw))
		}
		return nil, nil
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

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// verifyTraditional checks the traditional component signature over M'.
func (a *Algorithm) verifyTraditional(pub crypto.PublicKey, mPrime, sig []byte) error {
	if err := a.VerifySupported(); err != nil {
		return err
	}
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
