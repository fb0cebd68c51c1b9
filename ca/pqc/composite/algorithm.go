// Package composite owns Composite ML-DSA as specified by
// draft-ietf-lamps-pq-composite-sigs-19: the algorithm table (OIDs
// 1.3.6.1.5.5.7.6.37-.54, labels, pre-hashes, component parameters), the
// message representative M', signing with MLDSA65-ECDSA-P256-SHA512
// (meshca's default) and MLDSA44-ECDSA-P256-SHA256, verification for all
// 18 algorithms, and the SubjectPublicKeyInfo / PKCS#8 encodings.
//
// The traditional halves come from Go's standard library, except the two
// the standard library lacks: the brainpoolP256r1 and brainpoolP384r1
// curves (RFC 5639) from github.com/ProtonMail/go-crypto/brainpool, used
// for verification only, and Ed448 (RFC 8032) from
// github.com/cloudflare/circl/sign/ed448. The package does not build or
// parse certificates.
package composite

import (
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/brainpool"

	"github.com/meshca/meshca/ca/pqc/mldsa"
)

// Prefix is the fixed prefix of every composite message representative M'.
const Prefix = "CompositeAlgorithmSignatures2025"

// MaxContextSize is the largest application context accepted.
const MaxContextSize = 255

var (
	// ErrSigningUnsupported: meshca signs only with the ECDSA P-256
	// composites.
	ErrSigningUnsupported = errors.New("composite: signing is supported only for MLDSA65-ECDSA-P256-SHA512 and MLDSA44-ECDSA-P256-SHA256")
	// ErrNotComposite: the OID is not a draft-19 composite ML-DSA OID.
	ErrNotComposite = errors.New("composite: not a composite ML-DSA algorithm")
	// ErrContextTooLong: the application context is longer than 255 bytes.
	ErrContextTooLong = errors.New("composite: context longer than 255 bytes")
)

type tradKind int

const (
	tradECDSA tradKind = iota + 1
	tradEd25519
	tradEd448
	tradRSAPKCS1
	tradRSAPSS
)

// Algorithm is one composite ML-DSA algorithm of draft-19. Compare them by
// pointer.
type Algorithm struct {
	name    string // without the "id-" prefix
	label   string // the signature label; "COMPSIG-" + name unless the draft abbreviates it
	arc     int    // last arc under 1.3.6.1.5.5.7.6
	mldsa   *mldsa.ParameterSet
	phName  string
	ph      func([]byte) []byte
	kind    tradKind
	trad    string // human description of the traditional half
	curve   elliptic.Curve
	coord   int // EC field element size in bytes
	curveID asn1.ObjectIdentifier
	hash    crypto.Hash // ECDSA / RSA message digest over M'
	rsaBits int
	salt    int  // RSASSA-PSS salt length
	signs   bool // meshca can generate keys and sign
}

func sha256PH(m []byte) []byte { h := sha256.Sum256(m); return h[:] }
func sha512PH(m []byte) []byte { h := sha512.Sum512(m); return h[:] }
func shake256PH(m []byte) []byte {
	return sha3.SumSHAKE256(m, 64)
}

var (
	oidP256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384  = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521  = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidBP256 = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}
	oidBP384 = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 11}
)

func rsaPSS(name string, arc int, p *mldsa.ParameterSet, bits int) *Algorithm {
	a := &Algorithm{name: name, arc: arc, mldsa: p, kind: tradRSAPSS, rsaBits: bits,
		hash: crypto.SHA256, salt: 32}
	if bits == 4096 {
		a.hash, a.salt = crypto.SHA384, 48
	}
	a.trad = fmt.Sprintf("RSASSA-PSS RSA-%d %s MGF1-%s salt %d", bits, a.hash, a.hash, a.salt)
	return a
}

func rsaPKCS1(name string, arc int, p *mldsa.ParameterSet, bits int) *Algorithm {
	a := &Algorithm{name: name, arc: arc, mldsa: p, kind: tradRSAPKCS1, rsaBits: bits, hash: crypto.SHA256}
	if bits == 4096 {
		a.hash = crypto.SHA384
	}
	a.trad = fmt.Sprintf("RSASSA-PKCS1-v1_5 RSA-%d %s", bits, a.hash)
	return a
}

func ec(name string, arc int, p *mldsa.ParameterSet, curveName string, curve elliptic.Curve, coord int, id asn1.ObjectIdentifier, h crypto.Hash) *Algorithm {
	return &Algorithm{name: name, arc: arc, mldsa: p, kind: tradECDSA, curve: curve, coord: coord, curveID: id, hash: h,
		trad: fmt.Sprintf("ECDSA %s with %s", curveName, h)}
}

func brainpoolAlg(name, label string, arc int, p *mldsa.ParameterSet, curveName string, curve elliptic.Curve, coord int, id asn1.ObjectIdentifier, h crypto.Hash) *Algorithm {
	a := ec(name, arc, p, curveName, curve, coord, id, h)
	a.label = label
	return a
}

func ed25519Alg(name string, arc int, p *mldsa.ParameterSet) *Algorithm {
	return &Algorithm{name: name, arc: arc, mldsa: p, kind: tradEd25519, trad: "Ed25519"}
}

var (
	// MLDSA44ECDSAP256SHA256 is id-MLDSA44-ECDSA-P256-SHA256
	// (1.3.6.1.5.5.7.6.40).
	MLDSA44ECDSAP256SHA256 = ec("MLDSA44-ECDSA-P256-SHA256", 40, mldsa.MLDSA44, "P-256", elliptic.P256(), 32, oidP256, crypto.SHA256)
	// MLDSA65ECDSAP256SHA512 is id-MLDSA65-ECDSA-P256-SHA512
	// (1.3.6.1.5.5.7.6.45), meshca's default composite.
	MLDSA65ECDSAP256SHA512 = ec("MLDSA65-ECDSA-P256-SHA512", 45, mldsa.MLDSA65, "P-256", elliptic.P256(), 32, oidP256, crypto.SHA256)

	// Default is the composite algorithm meshca uses when none is configured.
	Default = MLDSA65ECDSAP256SHA512

	algorithms = []*Algorithm{
		rsaPSS("MLDSA44-RSA2048-PSS-SHA256", 37, mldsa.MLDSA44, 2048),
		rsaPKCS1("MLDSA44-RSA2048-PKCS15-SHA256", 38, mldsa.MLDSA44, 2048),
		ed25519Alg("MLDSA44-Ed25519-SHA512", 39, mldsa.MLDSA44),
		MLDSA44ECDSAP256SHA256,
		rsaPSS("MLDSA65-RSA3072-PSS-SHA512", 41, mldsa.MLDSA65, 3072),
		rsaPKCS1("MLDSA65-RSA3072-PKCS15-SHA512", 42, mldsa.MLDSA65, 3072),
		rsaPSS("MLDSA65-RSA4096-PSS-SHA512", 43, mldsa.MLDSA65, 4096),
		rsaPKCS1("MLDSA65-RSA4096-PKCS15-SHA512", 44, mldsa.MLDSA65, 4096),
		MLDSA65ECDSAP256SHA512,
		ec("MLDSA65-ECDSA-P384-SHA512", 46, mldsa.MLDSA65, "P-384", elliptic.P384(), 48, oidP384, crypto.SHA384),
		brainpoolAlg("MLDSA65-ECDSA-brainpoolP256r1-SHA512", "COMPSIG-MLDSA65-ECDSA-BP256-SHA512", 47, mldsa.MLDSA65, "brainpoolP256r1", brainpool.P256r1(), 32, oidBP256, crypto.SHA256),
		ed25519Alg("MLDSA65-Ed25519-SHA512", 48, mldsa.MLDSA65),
		ec("MLDSA87-ECDSA-P384-SHA512", 49, mldsa.MLDSA87, "P-384", elliptic.P384(), 48, oidP384, crypto.SHA384),
		brainpoolAlg("MLDSA87-ECDSA-brainpoolP384r1-SHA512", "COMPSIG-MLDSA87-ECDSA-BP384-SHA512", 50, mldsa.MLDSA87, "brainpoolP384r1", brainpool.P384r1(), 48, oidBP384, crypto.SHA384),
		{name: "MLDSA87-Ed448-SHAKE256", arc: 51, mldsa: mldsa.MLDSA87, kind: tradEd448, trad: "Ed448"},
		rsaPSS("MLDSA87-RSA3072-PSS-SHA512", 52, mldsa.MLDSA87, 3072),
		rsaPSS("MLDSA87-RSA4096-PSS-SHA512", 53, mldsa.MLDSA87, 4096),
		ec("MLDSA87-ECDSA-P521-SHA512", 54, mldsa.MLDSA87, "P-521", elliptic.P521(), 66, oidP521, crypto.SHA512),
	}
)

func init() {
	for _, a := range algorithms {
		if a.label == "" {
			a.label = "COMPSIG-" + a.name
		}
		switch {
		case strings.HasSuffix(a.name, "-SHA256"):
			a.phName, a.ph = "SHA-256", sha256PH
		case strings.HasSuffix(a.name, "-SHA512"):
			a.phName, a.ph = "SHA-512", sha512PH
		case strings.HasSuffix(a.name, "-SHAKE256"):
			a.phName, a.ph = "SHAKE256/64", shake256PH
		default:
			panic("composite: no pre-hash for " + a.name)
		}
	}
	MLDSA44ECDSAP256SHA256.signs = true
	MLDSA65ECDSAP256SHA512.signs = true
}

// Algorithms returns all 18 draft-19 composite algorithms in OID order.
func Algorithms() []*Algorithm { return append([]*Algorithm(nil), algorithms...) }

// AlgorithmByOID returns the composite algorithm with the given OID.
func AlgorithmByOID(oid asn1.ObjectIdentifier) (*Algorithm, bool) {
	for _, a := range algorithms {
		if a.OID().Equal(oid) {
			return a, true
		}
	}
	return nil, false
}

// AlgorithmByName returns the algorithm named like "MLDSA65-ECDSA-P256-SHA512"
// (an "id-" prefix is accepted).
func AlgorithmByName(name string) (*Algorithm, bool) {
	name = strings.TrimPrefix(name, "id-")
	for _, a := range algorithms {
		if a.name == name {
			return a, true
		}
	}
	return nil, false
}

// Name returns the draft name without "id-", e.g. "MLDSA65-ECDSA-P256-SHA512".
func (a *Algorithm) Name() string { return a.name }

// String returns Name.
func (a *Algorithm) String() string { return a.name }

// OID returns the algorithm's OID, which names both key and signature.
func (a *Algorithm) OID() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 6, a.arc}
}

// AlgorithmIdentifier returns the OID with parameters absent.
func (a *Algorithm) AlgorithmIdentifier() pkix.AlgorithmIdentifier {
	return pkix.AlgorithmIdentifier{Algorithm: a.OID()}
}

// Label returns the signature label: "COMPSIG-" followed by the name, except
// for the brainpool algorithms, whose labels draft-19 section 7 abbreviates
// the curve in ("COMPSIG-MLDSA65-ECDSA-BP256-SHA512").
func (a *Algorithm) Label() string { return a.label }

// MLDSA returns the ML-DSA component's parameter set.
func (a *Algorithm) MLDSA() *mldsa.ParameterSet { return a.mldsa }

// PreHash names the pre-hash PH ("SHA-256", "SHA-512" or "SHAKE256/64").
func (a *Algorithm) PreHash() string { return a.phName }

// Traditional describes the traditional component, e.g.
// "ECDSA P-256 with SHA-256".
func (a *Algorithm) Traditional() string { return a.trad }

// CanSign reports whether meshca can generate keys and sign with a.
func (a *Algorithm) CanSign() bool { return a.signs }

// MessageRepresentative returns
// M' = Prefix || Label || len(ctx) || ctx || PH(message).
func (a *Algorithm) MessageRepresentative(message, context []byte) ([]byte, error) {
	if len(context) > MaxContextSize {
		return nil, ErrContextTooLong
	}
	ph := a.ph(message)
	m := make([]byte, 0, len(Prefix)+len(a.Label())+1+len(context)+len(ph))
	m = append(m, Prefix...)
	m = append(m, a.Label()...)
	m = append(m, byte(len(context)))
	m = append(m, context...)
	return append(m, ph...), nil
}
