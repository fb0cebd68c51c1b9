package store

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalid is wrapped by every error that refuses bad input to a store
// (a malformed serial, an unknown reason, a bad CRL scope); test it with
// errors.Is. Such a call stores nothing.
var ErrInvalid = errors.New("invalid input")

// MaxSerialOctets is the longest serial number a revocation may name:
// RFC 5280 section 4.1.2.2 forbids CAs serials longer than 20 octets and
// requires relying parties to handle serials up to 20 octets.
const MaxSerialOctets = 20

// MaxCRLScopeLen bounds a CRL scope name.
const MaxCRLScopeLen = 64

// ValidateSerial checks that s is a serial as meshca records it: the
// unsigned big-endian magnitude in lower-case hex, whole octets, no
// leading zero octet (the form hex.EncodeToString(big.Int.Bytes()) gives,
// so one certificate has one key), 1 to MaxSerialOctets octets.
func ValidateSerial(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: the serial is empty", ErrInvalid)
	case len(s)%2 != 0:
		return fmt.Errorf("%w: serial %q: give lower-case hex of whole octets (an even number of digits)", ErrInvalid, clip(s))
	case len(s)/2 > MaxSerialOctets:
		return fmt.Errorf("%w: serial %q is %d octets, longer than the %d octets of RFC 5280 section 4.1.2.2", ErrInvalid, clip(s), len(s)/2, MaxSerialOctets)
	case s[:2] == "00":
		return fmt.Errorf("%w: serial %q starts with a zero octet; give it without leading zeros", ErrInvalid, clip(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: serial %q is not lower-case hex", ErrInvalid, clip(s))
		}
	}
	return nil
}

// Valid reports whether r is a CRLReason code of RFC 5280 section 5.3.1
// (0 to 10; 7 is not used).
func (r Reason) Valid() bool { return r >= ReasonUnspecified && r <= ReasonAACompromise && r != 7 }

// ValidateRevocation checks a revocation before it is stored: a valid
// serial, a known kind, a reason code of RFC 5280 section 5.3.1 other
// than 7, and a revocation time and (when set) an invalidity date that a
// CRL can carry (TimeEncodable). Seq is ignored (the store assigns it).
func ValidateRevocation(r Revocation) error {
	if err := ValidateSerial(r.Serial); err != nil {
		return err
	}
	switch {
	case r.Kind != KindLeaf && r.Kind != KindIntermediate:
		return fmt.Errorf("%w: serial %s: unknown revocation kind %q (want %q or %q)", ErrInvalid, r.Serial, clip(string(r.Kind)), KindLeaf, KindIntermediate)
	case !r.Reason.Valid():
		return fmt.Errorf("%w: serial %s: %d is not a CRLReason code of RFC 5280 section 5.3.1", ErrInvalid, r.Serial, int(r.Reason))
	case r.RevokedAt.IsZero():
		return fmt.Errorf("%w: serial %s: the revocation time is not set", ErrInvalid, r.Serial)
	case !TimeEncodable(r.RevokedAt):
		return fmt.Errorf("%w: serial %s: revocation time year %d cannot be encoded on a CRL", ErrInvalid, r.Serial, r.RevokedAt.UTC().Year())
	case !r.InvalidityDate.IsZero() && !TimeEncodable(r.InvalidityDate):
		return fmt.Errorf("%w: serial %s: invalidity date year %d cannot be encoded on a CRL", ErrInvalid, r.Serial, r.InvalidityDate.UTC().Year())
	}
	return nil
}

// TimeEncodable reports whether t can be a time of a CRL (thisUpdate,
// nextUpdate, revocationDate, invalidityDate): set, and in UTC within the
// years 1 to 9999 that a GeneralizedTime YYYYMMDDHHMMSSZ carries (RFC 5280
// sections 4.1.2.5.2 and 5.1.2.4). The CRL builder and the store use this
// one check, so that the store never holds a record no CRL can list.
func TimeEncodable(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// ValidateCRLScope checks a CRL scope name ("gen-7", "root"): 1 to
// MaxCRLScopeLen printable ASCII characters without spaces.
func ValidateCRLScope(scope string) error {
	if scope == "" || len(scope) > MaxCRLScopeLen {
		return fmt.Errorf("%w: CRL scope %q must be 1 to %d characters", ErrInvalid, clip(scope), MaxCRLScopeLen)
	}
	for i := 0; i < len(scope); i++ {
		if c := scope[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: CRL scope %q may hold only printable ASCII characters without spaces", ErrInvalid, clip(scope))
		}
	}
	return nil
}

// clip shortens caller input quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
