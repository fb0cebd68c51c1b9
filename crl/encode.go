package crl

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// DER tags used by the hand-written encoder (ITU-T X.690).
const (
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagOctetString     = 0x04
	tagEnumerated      = 0x0a
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30
	tagContext0        = 0xa0 // [0] constructed
)

// maxDERLength bounds every length the encoder writes: four length octets.
const maxDERLength = 1<<32 - 1

// headerLen is the size of the identifier and length octets of a TLV
// whose contents are n octets long (DER definite form, X.690 8.1.3).
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	case n <= 0xffff:
		return 4
	case n <= 0xffffff:
		return 5
	}
	return 6
}

// appendHeader appends the identifier and length octets of a TLV.
func appendHeader(b []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, tag, byte(n))
	case n <= 0xff:
		return append(b, tag, 0x81, byte(n))
	case n <= 0xffff:
		return append(b, tag, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(b, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, tag, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// timeLen is the size of the contents of t encoded by appendTime.
func timeLen(t time.Time) int {
	if y := t.Year(); y >= 1950 && y < 2050 {
		return 13
	}
	return 15
}

// encodable is checkTime without the error, for the per-entry path.
func encodable(t time.Time) bool { return store.TimeEncodable(t) }

// checkTime refuses times DER cannot carry as RFC 5280 wants them.
func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("crl: %s is not set", what)
	}
	if !store.TimeEncodable(t) {
		return fmt.Errorf("crl: %s year %d cannot be encoded", what, t.UTC().Year())
	}
	return nil
}

// appendTime appends t (in UTC, whole seconds) as RFC 5280 section
// 5.1.2.4 (thisUpdate), 5.1.2.5 (nextUpdate) and 5.1.2.6
// (revocationDate) require: UTCTime YYMMDDHHMMSSZ for the years 1950
// through 2049, GeneralizedTime YYYYMMDDHHMMSSZ otherwise. The caller
// passes a time in UTC that checkTime accepted.
func appendTime(b []byte, t time.Time) []byte {
	y := t.Year()
	if y >= 1950 && y < 2050 {
		b = append(b, tagUTCTime, 13)
		b = append2(b, y%100)
	} else {
		b = append(b, tagGeneralizedTime, 15)
		b = append2(b, y/100)
		b = append2(b, y%100)
	}
	return appendMDHMS(b, t)
}

// appendGeneralizedTime appends t as a GeneralizedTime YYYYMMDDHHMMSSZ,
// the only form of invalidityDate (RFC 5280 section 5.3.2).
func appendGeneralizedTime(b []byte, t time.Time) []byte {
	y := t.Year()
	b = append(b, tagGeneralizedTime, 15)
	b = append2(b, y/100)
	b = append2(b, y%100)
	return appendMDHMS(b, t)
}

func appendMDHMS(b []byte, t time.Time) []byte {
	_, m, d := t.Date()
	hh, mm, ss := t.Clock()
	b = append2(b, int(m))
	b = append2(b, d)
	b = append2(b, hh)
	b = append2(b, mm)
	b = append2(b, ss)
	return append(b, 'Z')
}

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

// The entry extensions of RFC 5280 section 5.3, as fixed DER prefixes:
// Extension ::= SEQUENCE { extnID, extnValue OCTET STRING }, non-critical.
var (
	// reasonCode (2.5.29.21): SEQUENCE(10) OID OCTET STRING(3) ENUMERATED(1) <reason>.
	reasonCodePrefix = []byte{tagSequence, 10, 0x06, 0x03, 0x55, 0x1d, 0x15, tagOctetString, 3, tagEnumerated, 1}
	// invalidityDate (2.5.29.24): SEQUENCE(24) OID OCTET STRING(17) GeneralizedTime(15).
	invalidityDatePrefix = []byte{tagSequence, 24, 0x06, 0x03, 0x55, 0x1d, 0x18, tagOctetString, 17}
)

const (
	reasonCodeLen     = 12 // len(reasonCodePrefix) + 1
	invalidityDateLen = 26 // len(invalidityDatePrefix) + 17
)

// validReason reports whether r is a CRLReason value of RFC 5280
// section 5.3.1 (7 is unused).
func validReason(r store.Reason) bool {
	return r >= store.ReasonUnspecified && r <= store.ReasonAACompromise && r != 7
}

var errEmptySerial = errors.New("crl: entry has an empty serial")

// appendEntry appends one revokedCertificates element (RFC 5280 section
// 5.1.2.6):
//
//	SEQUENCE { userCertificate CertificateSerialNumber,
//	           revocationDate Time,
//	           crlEntryExtensions Extensions OPTIONAL }
//
// The serial is a positive INTEGER: a leading zero octet is added when
// the magnitude's high bit is set (X.690 8.3.2 two's complement).
func appendEntry(b []byte, e *Entry) ([]byte, error) {
	mag := trimSerial(e.Serial)
	if len(mag) == 0 {
		return b, errEmptySerial
	}
	if len(mag) > maxSerialLen {
		return b, fmt.Errorf("crl: entry serial %x is longer than 20 octets (RFC 5280 section 4.1.2.2)", mag)
	}
	if !encodable(e.RevokedAt) {
		return b, checkTime(fmt.Sprintf("revocationDate of serial %x", mag), e.RevokedAt)
	}
	if !validReason(e.Reason) {
		return b, fmt.Errorf("crl: serial %x: %v is not a CRLReason (RFC 5280 section 5.3.1)", mag, e.Reason)
	}
	intLen := len(mag)
	pad := mag[0]&0x80 != 0
	if pad {
		intLen++
	}
	revokedAt := e.RevokedAt.UTC()
	extLen := 0
	if e.Reason != store.ReasonUnspecified {
		extLen += reasonCodeLen
	}
	var invalidity time.Time
	if !e.InvalidityDate.IsZero() {
		if !encodable(e.InvalidityDate) {
			return b, checkTime(fmt.Sprintf("invalidityDate of serial %x", mag), e.InvalidityDate)
		}
		invalidity = e.InvalidityDate.UTC()
		extLen += invalidityDateLen
	}
	n := 2 + intLen + 2 + timeLen(revokedAt)
	if extLen > 0 {
		n += 2 + extLen
	}
	// n <= 2+21 + 2+15 + 2+38 < 0x80: every length here is one octet.
	b = append(b, tagSequence, byte(n), tagInteger, byte(intLen))
	if pad {
		b = append(b, 0)
	}
	b = append(b, mag...)
	b = appendTime(b, revokedAt)
	if extLen > 0 {
		b = append(b, tagSequence, byte(extLen))
		// The order of crypto/x509.CreateRevocationList (any order is
		// valid), so that the two encodings can be compared byte for byte.
		if !invalidity.IsZero() {
			b = append(b, invalidityDatePrefix...)
			b = appendGeneralizedTime(b, invalidity)
		}
		if e.Reason != store.ReasonUnspecified {
			b = append(b, reasonCodePrefix...)
			b = append(b, byte(e.Reason))
		}
	}
	return b, nil
}
