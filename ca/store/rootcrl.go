package store

import (
	"context"
	"fmt"
	"math/big"
)

// MaxRootCRLBytes bounds a root CRL kept by RootCRLs; it matches what a
// root CRL source reads (crl.rootCRL, Vault).
const MaxRootCRLBytes = 16 << 20

// RootCRLNumberBytes is the width RootCRLs compare CRL numbers at: RFC
// 5280 section 5.2.3 allows up to 20 octets, and a number is kept as an
// unsigned big-endian integer padded to this width, so that comparing the
// bytes compares the numbers.
const RootCRLNumberBytes = 21

// RootCRLs keeps, per issuer, the CRL of a root (or of the CA a Vault
// mount signs with) that meshca took last from its source and publishes
// in ca-crl.pem, so that a restarted meshca, or another replica on a
// shared store, never takes an older one than was taken before (a
// replayed or rolled-back copy: a lower CRLNumber, RFC 5280 section
// 5.2.3), and has a CRL to publish while its source is unreachable.
type RootCRLs interface {
	// KeepRootCRL stores der, the CRL whose CRLNumber is number (nil:
	// it has none), as issuer's, unless the CRL stored for issuer has a
	// greater number, or has a number while der has none. It returns the
	// CRL stored for issuer after the call: der, or the one kept. One
	// transaction, durable before it returns. A bad issuer key
	// (ValidateBundleName's rules), a negative or over-long number, or
	// an empty der or one over MaxRootCRLBytes is refused with ErrInvalid.
	KeepRootCRL(ctx context.Context, issuer string, number *big.Int, der []byte) ([]byte, error)
	// GetRootCRL returns the CRL stored for issuer, or ErrNotFound.
	GetRootCRL(ctx context.Context, issuer string) ([]byte, error)
}

// ValidateRootCRL checks KeepRootCRL's arguments and returns number as
// RootCRLNumberBytes big-endian bytes (nil for none).
func ValidateRootCRL(issuer string, number *big.Int, der []byte) ([]byte, error) {
	if err := ValidateBundleName(issuer); err != nil {
		return nil, fmt.Errorf("root CRL issuer key: %w", err)
	}
	if len(der) == 0 || len(der) > MaxRootCRLBytes {
		return nil, fmt.Errorf("%w: a root CRL of %d bytes; give 1 to %d", ErrInvalid, len(der), MaxRootCRLBytes)
	}
	if number == nil {
		return nil, nil
	}
	if number.Sign() < 0 || len(number.Bytes()) > RootCRLNumberBytes {
		return nil, fmt.Errorf("%w: CRL number %s is negative or over %d octets", ErrInvalid, number, RootCRLNumberBytes)
	}
	return number.FillBytes(make([]byte, RootCRLNumberBytes)), nil
}

// RootCRLReplaces tells whether a CRL numbered next (RootCRLNumberBytes
// bytes, nil for none) replaces the one stored, numbered stored:
// KeepRootCRL's rule.
func RootCRLReplaces(next, stored []byte) bool {
	if next == nil {
		return stored == nil
	}
	return stored == nil || string(next) >= string(stored)
}
