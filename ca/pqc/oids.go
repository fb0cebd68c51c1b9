package pqc

import (
	"encoding/asn1"
	"fmt"

	"github.com/meshca/meshca/ca/oid"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
)

// oidNames names the OIDs `meshca inspect` is likely to meet. The OIDs
// meshca acts on are defined once: the X.509 and Catalyst ones in ca/oid,
// ML-DSA and composite in the key packages.
var oidNames = func() map[string]string {
	m := map[string]string{
		oid.SubjectAltPublicKeyInfo.String(): "subjectAltPublicKeyInfo",
		oid.AltSignatureAlgorithm.String():   "altSignatureAlgorithm",
		oid.AltSignatureValue.String():       "altSignatureValue",
		"1.2.840.10045.2.1":                  "id-ecPublicKey",
		"1.2.840.10045.4.3.2":                "ecdsa-with-SHA256",
		"1.2.840.10045.4.3.3":                "ecdsa-with-SHA384",
		"1.2.840.10045.4.3.4":                "ecdsa-with-SHA512",
		"1.2.840.113549.1.1.1":               "rsaEncryption",
		"1.2.840.113549.1.1.10":              "RSASSA-PSS",
		"1.2.840.113549.1.1.11":              "sha256WithRSAEncryption",
		"1.2.840.113549.1.1.12":              "sha384WithRSAEncryption",
		"1.2.840.113549.1.1.13":              "sha512WithRSAEncryption",
		"1.3.101.112":                        "Ed25519",
		"1.3.101.113":                        "Ed448",
		"1.2.840.10045.3.1.7":                "P-256",
		"1.3.132.0.34":                       "P-384",
		"1.3.132.0.35":                       "P-521",
		"2.16.840.1.101.3.4.4.1":             "ML-KEM-512",
		"2.16.840.1.101.3.4.4.2":             "ML-KEM-768",
		"2.16.840.1.101.3.4.4.3":             "ML-KEM-1024",
	}
	for _, p := range mldsa.ParameterSets() {
		m[p.OID().String()] = p.Name()
	}
	for i, n := range []string{"44", "65", "87"} {
		m[fmt.Sprintf("2.16.840.1.101.3.4.3.%d", 32+i)] = "HashML-DSA-" + n + "-with-SHA512"
	}
	slh := []string{"sha2-128s", "sha2-128f", "sha2-192s", "sha2-192f", "sha2-256s", "sha2-256f",
		"shake-128s", "shake-128f", "shake-192s", "shake-192f", "shake-256s", "shake-256f"}
	for i, n := range slh {
		m[fmt.Sprintf("2.16.840.1.101.3.4.3.%d", 20+i)] = "SLH-DSA-" + n
	}
	for _, a := range composite.Algorithms() {
		m[a.OID().String()] = a.Name()
	}
	return m
}()

// OIDName returns a readable name for oid ("ML-DSA-65",
// "MLDSA65-ECDSA-P256-SHA512", "ecdsa-with-SHA256", "altSignatureValue",
// ...), or its dotted form when unknown.
func OIDName(oid asn1.ObjectIdentifier) string {
	if name, ok := oidNames[oid.String()]; ok {
		return name
	}
	return oid.String()
}

// family classifies a signature or key algorithm OID.
type family int

const (
	familyOther family = iota
	familyMLDSA
	familyComposite
	familyHashMLDSA
)

func familyOf(oid asn1.ObjectIdentifier) family {
	if _, ok := mldsa.ParameterSetByOID(oid); ok {
		return familyMLDSA
	}
	if _, ok := composite.AlgorithmByOID(oid); ok {
		return familyComposite
	}
	if mldsa.IsHashMLDSAOID(oid) {
		return familyHashMLDSA
	}
	return familyOther
}
