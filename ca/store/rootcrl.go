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
	// issuer has a greater number, or has a number while c has none; a c
	// with Replaces set also replaces a stored CRL numbered Replaces. It
	// returns the CRL stored for issuer after the call: c's DER, or the
	// one kept. A c identical to the CRL stored writes nothing. One
	// transaction, durable before it returns. A bad issuer key
	// (ValidateBundleName's rules), a negative or over-long number, or an
	// empty DER or one over MaxRootCRLBytes is refused with ErrInvalid.
	KeepRootCRL(ctx context.Context, issuer string, c RootCRL) ([]byte, error)
	// GetRootCRL returns the CRL stored for issuer, or ErrNotFound.
	GetRootCRL(ctx context.Context, issuer string) ([]byte, error)
}

// RootCRL is a root CRL to keep.
type RootCRL struct {
	// Number is its CRLNumber; nil when it has none.
	Number *big.Int
	DER    []byte
	// Replaces, when set, is the number of an expired CRL that c
	// replaces although c's number is lower: the issuer's numbering went
	// back, as the caller checked (root.TakeRenumbered). Only a stored
	// CRL of that number is replaced so (a compare-and-swap): one that
	// another replica stored since is kept.
	Replaces *big.Int
}

// ValidateRootCRL checks KeepRootCRL's arguments and returns c's number
// and c.Replaces as RootCRLNumberBytes big-endian bytes (nil for none).
func ValidateRootCRL(issuer string, c RootCRL) (number, replaces []byte, err error) {
	if err := ValidateBundleName(issuer); err != nil {
		return nil, nil, fmt.Errorf("root CRL issuer key: %w", err)
	}
	if len(c.DER) == 0 || len(c.DER) > MaxRootCRLBytes {
		return nil, nil, fmt.Errorf("%w: a root CRL of %d bytes; give 1 to %d", ErrInvalid, len(c.DER), MaxRootCRLBytes)
	}
	if number, err = rootCRLNumber(c.Number); err != nil {
		return nil, nil, err
	}
	if replaces, err = rootCRLNumber(c.Replaces); err != nil {
		return nil, nil, err
	}
	return number, replaces, nil
}

func rootCRLNumber(n *big.Int) ([]byte, error) {
	if n == nil {
		return nil, nil
	}
	if n.Sign() < 0 || len(n.Bytes()) > RootCRLNumberBytes {
		return nil, fmt.Errorf("%w: CRL number %s is negative or over %d octets", ErrInvalid, n, RootCRLNumberBytes)
	}
	return n.FillBytes(make([]byte, RootCRLNumberBytes)), nil
}

// RootCRLReplaces tells whether a CRL numbered next, replacing the number
// replaces (ValidateRootCRL's bytes, nil for none), replaces the CRL
// stored, numbered stored: KeepRootCRL's rule.
func RootCRLReplaces(next, replaces, stored []byte) bool {
	switch {
	case replaces != nil && stored != nil && string(replaces) == string(stored):
		return true
	case next == nil:
		return stored == nil
	}
	return stored == nil || string(next) >= string(stored)
}
