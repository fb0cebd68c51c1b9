package store

import (
	"context"
	"fmt"
)

// MaxBundleNameLen bounds the name of a bundle sequence: a SPIFFE trust
// domain name is at most 255 bytes (SPIFFE-ID specification, section 2.1).
const MaxBundleNameLen = 255

// MaxBundleContentBytes bounds the content stored with a bundle number:
// a few root certificates take a few tens of KiB.
const MaxBundleContentBytes = 1 << 20

// BundleRecord is the content last numbered for a bundle name.
type BundleRecord struct {
	// Sequence is its spiffe_sequence.
	Sequence uint64
	// Digest is the SHA-256 the caller computed of the content.
	Digest [32]byte
	// Content is what the caller stored with it (for the SPIFFE bundle
	// endpoint, its roots in PEM), so that other replicas can serve it.
	Content []byte
}

// BundleSequences keeps the spiffe_sequence of the SPIFFE bundles meshca
// serves (SPIFFE "Trust Domain and Bundle" specification, section 4.1.1:
// the sequence number increases with every change of the bundle). One
// record per bundle name (the trust domain): the content last numbered,
// its SHA-256 and its number.
type BundleSequences interface {
	// BundleSequence returns the sequence number of bundle name's content
	// whose SHA-256 is digest. When digest is the content last numbered
	// it returns that number unchanged (content is not written again),
	// so that replicas serving the same content agree; otherwise it
	// stores digest and content with the next number and returns it once
	// that is durable, in one transaction: a changed content always gets
	// a number higher than every number returned before for name, across
	// restarts and replicas. The first number is 1. A bad name
	// (ValidateBundleName) or a content over MaxBundleContentBytes is
	// refused with ErrInvalid and changes nothing.
	BundleSequence(ctx context.Context, name string, digest [32]byte, content []byte) (uint64, error)
	// GetBundle returns the content last numbered for name, or
	// ErrNotFound when none was.
	GetBundle(ctx context.Context, name string) (BundleRecord, error)
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

// ValidateBundle checks the input of BundleSequence: a valid name and a
// content of at most MaxBundleContentBytes.
func ValidateBundle(name string, content []byte) error {
	if err := ValidateBundleName(name); err != nil {
		return err
	}
	if len(content) > MaxBundleContentBytes {
		return fmt.Errorf("%w: bundle content of %d bytes is over %d", ErrInvalid, len(content), MaxBundleContentBytes)
	}
	return nil
}
