package store

import (
	"context"
	"fmt"
)

// MaxBundleNameLen bounds the name of a bundle sequence: a SPIFFE trust
// domain name is at most 255 bytes (SPIFFE-ID specification, section 2.1).
const MaxBundleNameLen = 255

// BundleSequences keeps the spiffe_sequence of the SPIFFE bundles meshca
// serves (SPIFFE "Trust Domain and Bundle" specification, section 4.1.1:
// the sequence number increases with every change of the bundle). One
// record per bundle name (the trust domain): the SHA-256 of the content
// last numbered and its number.
type BundleSequences interface {
	// BundleSequence returns the sequence number of bundle name's content
	// whose SHA-256 is digest. When digest is the content last numbered
	// it returns that number unchanged, so that replicas serving the same
	// content agree; otherwise it stores digest with the next number and
	// returns it once that is durable, in one transaction: a changed
	// content always gets a number higher than every number returned
	// before for name, across restarts and replicas. The first number is
	// 1. A bad name (ValidateBundleName) is refused with ErrInvalid and
	// changes nothing.
	BundleSequence(ctx context.Context, name string, digest [32]byte) (uint64, error)
}

// ValidateBundleName checks the name of a bundle sequence: 1 to
// MaxBundleNameLen bytes of printable ASCII.
func ValidateBundleName(name string) error {
	if name == "" || len(name) > MaxBundleNameLen {
		return fmt.Errorf("%w: bundle name of %d bytes; give 1 to %d", ErrInvalid, len(name), MaxBundleNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: bundle name %q holds a byte that is not printable ASCII", ErrInvalid, clip(name))
		}
	}
	return nil
}
