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
// 5.2.3), and a crl.rootCRL source that cannot be read at start has a CRL
// to publish.
type RootCRLs interface {
	// KeepRootCRL stores c as issuer's CRL, unless the CRL stored for
	// issuer has a greater number, or has a number while c has none (and
	// c is not Renumbered). It returns the CRL stored for issuer after
	// the call: c's DER, or the one kept. A c identical to the CRL stored
	// writes nothing. One transaction, durable before it returns. A bad
	// issuer key (ValidateBundleName's rules), a negative or over-long
	// number, or an empty DER or one over MaxRootCRLBytes is refused with
	// ErrInvalid.
	KeepRootCRL(ctx context.Context, issuer string, c RootCRL) ([]byte, error)
	// GetRootCRL returns the CRL stored for issuer, or ErrNotFound.
	GetRootCRL(ctx context.Context, issuer string) ([]byte, error)
}

// RootCRL is a root CRL to keep.
type RootCRL struct {
	// Number is its CRLNumber; nil when it has none.
	Number *big.Int
	DER    []byte
	// Renumbered replaces the CRL stored whatever its number: the
	// issuer's numbering went back and the CRL stored has expired, as
	// the caller checked (root.TakeRenumbered).
	Renumbered bool
}

// ValidateRootCRL checks KeepRootCRL's arguments and returns c's number
// as RootCRLNumberBytes big-endian bytes (nil for none).
func ValidateRootCRL(issuer string, c RootCRL) ([]byte, error) {
	if err := ValidateBundleName(issuer); err != nil {
		return nil, fmt.Errorf("root CRL issuer key: %w", err)
	}
	if len(c.DER) == 0 || len(c.DER) > MaxRootCRLBytes {
		return nil, fmt.Errorf("%w: a root CRL of %d bytes; give 1 to %d", ErrInvalid, len(c.DER), MaxRootCRLBytes)
	}
	if c.Number == nil {
		return nil, nil
	}
	if c.Number.Sign() < 0 || len(c.Number.Bytes()) > RootCRLNumberBytes {
		return nil, fmt.Errorf("%w: CRL number %s is negative or over %d octets", ErrInvalid, c.Number, RootCRLNumberBytes)
	}
	return c.Number.FillBytes(make([]byte, RootCRLNumberBytes)), nil
}

// RootCRLReplaces tells whether c, numbered next (RootCRLNumberBytes
// bytes, nil for none), replaces the CRL stored, numbered stored:
// KeepRootCRL's rule.
func RootCRLReplaces(c RootCRL, next, stored []byte) bool {
	switch {
	case c.Renumbered:
		return true
	case next == nil:
		return stored == nil
	}
	return stored == nil || string(next) >= string(stored)
}
