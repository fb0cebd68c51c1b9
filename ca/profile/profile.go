// Package profile names meshca's certificate profiles and owns the rules
// that tie them together: which post-quantum algorithm a CA of each kind
// holds, and which leaf profiles a CA of each kind may issue.
//
//   - classical: RSA/ECDSA/Ed25519 signatures only (the chain Envoy checks).
//   - catalyst: the classical chain plus ITU-T X.509 alternative ML-DSA
//     signatures (2.5.29.72/.73/.74); Envoy still checks the classical one.
//   - composite: composite ML-DSA signatures
//     (draft-ietf-lamps-pq-composite-sigs), for PQ-aware relying parties.
//   - mldsa: pure ML-DSA signatures (RFC 9881), for PQ-only relying parties.
//
// It holds no keys and encodes nothing (ca/certenc does); it must not
// import the CA core, so that ca/config can validate with it.
package profile

import (
	"fmt"
	"slices"
)

// Name is a certificate profile as it appears in configuration and flags.
type Name string

// The profiles.
const (
	Classical Name = "classical"
	Catalyst  Name = "catalyst"
	Composite Name = "composite"
	MLDSA     Name = "mldsa"
)

// Default is the profile of a CA that configuration does not name: the
// classical chain Envoy verifies, with ML-DSA alternative signatures.
const Default = Catalyst

// All lists the profiles, the default first.
var All = []Name{Catalyst, Classical, Composite, MLDSA}

// Post-quantum algorithm names, as ca/pqc.GenerateKey spells them.
const (
	MLDSA44 = "ML-DSA-44"
	MLDSA65 = "ML-DSA-65"
	MLDSA87 = "ML-DSA-87"
	// CompositeMLDSA65P256 is MLDSA65-ECDSA-P256-SHA512 (1.3.6.1.5.5.7.6.45).
	CompositeMLDSA65P256 = "MLDSA65-ECDSA-P256-SHA512"
	// CompositeMLDSA44P256 is MLDSA44-ECDSA-P256-SHA256 (1.3.6.1.5.5.7.6.40).
	CompositeMLDSA44P256 = "MLDSA44-ECDSA-P256-SHA256"
)

// Valid reports whether n is a known profile.
func (n Name) Valid() bool { return slices.Contains(All, n) }

// Parse validates s.
func Parse(s string) (Name, error) {
	if n := Name(s); n.Valid() {
		return n, nil
	}
	return "", fmt.Errorf("profile %q is not one of %v", s, All)
}

// PostQuantum reports whether a CA of kind n holds a post-quantum key.
func (n Name) PostQuantum() bool { return n == Catalyst || n == Composite || n == MLDSA }

// PQAlgorithms lists the post-quantum algorithms a CA of kind n may hold,
// the default first; none for classical. Catalyst and mldsa CAs hold an
// ML-DSA key, composite CAs a composite key.
func (n Name) PQAlgorithms() []string {
	switch n {
	case Catalyst, MLDSA:
		return []string{MLDSA65, MLDSA44, MLDSA87}
	case Composite:
		return []string{CompositeMLDSA65P256, CompositeMLDSA44P256}
	}
	return nil
}

// DefaultPQAlgorithm is the post-quantum algorithm of a CA of kind n when
// configuration names none ("" for classical).
func (n Name) DefaultPQAlgorithm() string {
	if algs := n.PQAlgorithms(); len(algs) > 0 {
		return algs[0]
	}
	return ""
}

// Leaves lists the leaf profiles a CA of kind n can issue, its default
// first. A catalyst CA holds both a classical and an ML-DSA key, so it can
// leave the alternative signature out; the other kinds issue only their own.
func (n Name) Leaves() []Name {
	switch n {
	case Catalyst:
		return []Name{Catalyst, Classical}
	case Classical, Composite, MLDSA:
		return []Name{n}
	}
	return nil
}

// DefaultLeaf is the leaf profile a CA of kind n issues by default.
func (n Name) DefaultLeaf() Name {
	if l := n.Leaves(); len(l) > 0 {
		return l[0]
	}
	return ""
}

// CheckLeaf explains why a CA of kind n cannot issue leaf, or returns nil.
func (n Name) CheckLeaf(leaf Name) error {
	if !leaf.Valid() {
		return fmt.Errorf("leaf profile %q is not one of %v", leaf, All)
	}
	if slices.Contains(n.Leaves(), leaf) {
		return nil
	}
	return fmt.Errorf("a CA of profile %s cannot issue %s certificates (it can issue %v)", n, leaf, n.Leaves())
}
