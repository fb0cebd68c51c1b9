// Package oid declares, once, the object identifiers meshca encodes into
// certificates and CRLs and checks in what it reads: the X.509 extensions
// of RFC 5280 section 4.2 (id-ce, id-pe), the CRL and CRL entry extensions
// of sections 5.2 and 5.3, the Catalyst extensions of ITU-T X.509 (10/2019)
// section 9.8, and the classical signature algorithms certificates and
// audit checkpoints are signed with.
//
// The values are asn1.ObjectIdentifier slices; callers compare with
// Equal and must not modify them.
package oid

import (
	"crypto/x509"
	"encoding/asn1"
)

// Certificate extensions, RFC 5280 section 4.2.
var (
	SubjectKeyID          = asn1.ObjectIdentifier{2, 5, 29, 14} // 4.2.1.2
	KeyUsage              = asn1.ObjectIdentifier{2, 5, 29, 15} // 4.2.1.3
	SubjectAltName        = asn1.ObjectIdentifier{2, 5, 29, 17} // 4.2.1.6
	BasicConstraints      = asn1.ObjectIdentifier{2, 5, 29, 19} // 4.2.1.9
	CRLDistributionPoints = asn1.ObjectIdentifier{2, 5, 29, 31} // 4.2.1.13
	ExtKeyUsage           = asn1.ObjectIdentifier{2, 5, 29, 37} // 4.2.1.12
	// AuthorityKeyID is a certificate (4.2.1.1) and a CRL (5.2.1) extension.
	AuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	// FreshestCRL is a certificate (4.2.1.15) and a CRL (5.2.6) extension.
	FreshestCRL = asn1.ObjectIdentifier{2, 5, 29, 46}

	AuthorityInfoAccess = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}  // 4.2.2.1
	AccessOCSP          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1} // id-ad-ocsp
	AccessCAIssuers     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2} // id-ad-caIssuers
)

// CRL extensions (RFC 5280 section 5.2) and CRL entry extensions (5.3).
var (
	CRLNumber                = asn1.ObjectIdentifier{2, 5, 29, 20} // 5.2.3
	DeltaCRLIndicator        = asn1.ObjectIdentifier{2, 5, 29, 27} // 5.2.4
	IssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28} // 5.2.5

	ReasonCode        = asn1.ObjectIdentifier{2, 5, 29, 21} // 5.3.1
	InvalidityDate    = asn1.ObjectIdentifier{2, 5, 29, 24} // 5.3.2
	CertificateIssuer = asn1.ObjectIdentifier{2, 5, 29, 29} // 5.3.3
)

// The Catalyst extensions of ITU-T X.509 (10/2019) section 9.8.
var (
	SubjectAltPublicKeyInfo = asn1.ObjectIdentifier{2, 5, 29, 72}
	AltSignatureAlgorithm   = asn1.ObjectIdentifier{2, 5, 29, 73}
	AltSignatureValue       = asn1.ObjectIdentifier{2, 5, 29, 74}
)

// Classical signature algorithms: RFC 4055 section 5 (RSA), RFC 5758
// section 3.2 (ECDSA), RFC 8410 section 3 (Ed25519).
var (
	SHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	ECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	ECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	ECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	Ed25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// ClassicalSignature is a classical signature algorithm's identifier and
// crypto/x509's name for it.
type ClassicalSignature struct {
	OID       asn1.ObjectIdentifier
	Algorithm x509.SignatureAlgorithm
}

// ClassicalSignatures are the classical signature algorithms meshca signs
// with (certificates, CRLs, audit checkpoints).
var ClassicalSignatures = []ClassicalSignature{
	{SHA256WithRSA, x509.SHA256WithRSA},
	{ECDSAWithSHA256, x509.ECDSAWithSHA256},
	{ECDSAWithSHA384, x509.ECDSAWithSHA384},
	{ECDSAWithSHA512, x509.ECDSAWithSHA512},
	{Ed25519, x509.PureEd25519},
}
