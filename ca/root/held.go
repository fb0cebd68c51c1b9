package root

import (
	"crypto/x509"
	"fmt"
)

// HeldRoot is a root in force whose key meshca holds: meshca signs its
// CRL, which lists the certificates it issued (RFC 5280 section 5).
type HeldRoot struct {
	Cert *x509.Certificate
	Key  CAKey
	// Minting: new intermediates are minted under this root; its CRL is
	// the one in cert-chain.pem.
	Minting bool
}

// RootKeysHolder is implemented by sources that may hold the keys of more
// than one root in force (a root rotation: the old and the new root are
// both trusted, and each has issued intermediates still in use).
type RootKeysHolder interface {
	// SigningRoots returns every root in force whose key meshca holds,
	// checked, the minting one (if held) first.
	SigningRoots() ([]HeldRoot, error)
}

// HeldRoots returns the roots of src in force whose key meshca holds:
// SigningRoots of a RootKeysHolder, the SigningRoot of a RootKeyHolder
// (minting), none for other sources.
func HeldRoots(src Source) ([]HeldRoot, error) {
	if h, ok := src.(RootKeysHolder); ok {
		return h.SigningRoots()
	}
	h, ok := src.(RootKeyHolder)
	if !ok {
		return nil, nil
	}
	c, k, err := h.SigningRoot()
	if err != nil {
		return nil, fmt.Errorf("the root's key: %w", err)
	}
	return []HeldRoot{{Cert: c, Key: k, Minting: true}}, nil
}
