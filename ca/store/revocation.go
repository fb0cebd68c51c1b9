package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Reason is a CRLReason code (RFC 5280 section 5.3.1).
type Reason int

// The CRLReason codes of RFC 5280 section 5.3.1; 7 is not used.
const (
	ReasonUnspecified          Reason = 0
	ReasonKeyCompromise        Reason = 1
	ReasonCACompromise         Reason = 2
	ReasonAffiliationChanged   Reason = 3
	ReasonSuperseded           Reason = 4
	ReasonCessationOfOperation Reason = 5
	ReasonCertificateHold      Reason = 6
	ReasonRemoveFromCRL        Reason = 8
	ReasonPrivilegeWithdrawn   Reason = 9
	ReasonAACompromise         Reason = 10
)

var reasonNames = map[Reason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// String is the RFC 5280 ASN.1 name of r.
func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// ParseReason accepts a reason's RFC 5280 name (case-insensitive) or its
// number. certificateHold and removeFromCRL are refused: meshca does not
// suspend certificates, a revocation is final.
func ParseReason(s string) (Reason, error) {
	for r, n := range reasonNames {
		if strings.EqualFold(s, n) || s == fmt.Sprint(int(r)) {
			if r == ReasonCertificateHold || r == ReasonRemoveFromCRL {
				return 0, fmt.Errorf("reason %q is not supported: meshca revocations are final (no certificate hold)", s)
			}
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown revocation reason %q; use one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (RFC 5280 section 5.3.1)", s)
}

// RevocationKind says which kind of certificate a revocation names, and
// so which CRL lists it.
type RevocationKind string

const (
	// KindLeaf is a certificate a meshca generation issued (or an
	// unknown serial): it is listed on that generation's CRL.
	KindLeaf RevocationKind = "leaf"
	// KindIntermediate is a meshca intermediate (a whole generation): it is
	// listed on the root's CRL when meshca holds the root key, else only
	// recorded (a Vault root lists it after the operator revokes it there).
	KindIntermediate RevocationKind = "intermediate"
)

// Revocation is the durable record of one revoked certificate.
type Revocation struct {
	// Seq is assigned by the store: strictly increasing in the order the
	// revocations were committed. Delta CRLs list the revocations after a
	// base's Seq.
	Seq uint64 `json:"seq"`
	// Serial is the certificate serial number in lower-case hex, as in
	// Issuance.Serial.
	Serial string         `json:"serial"`
	Kind   RevocationKind `json:"kind"`
	// Generation is the meshca CA generation that issued the certificate
	// (KindLeaf), or the revoked generation itself (KindIntermediate).
	Generation uint64 `json:"generation"`
	// Known says whether the serial matched an issuance record (or a
	// generation); an unknown serial is recorded too, as Vault allows.
	Known bool `json:"known"`
	// Identity is the SPIFFE ID of the issuance record; empty if unknown.
	Identity string `json:"identity,omitempty"`
	// NotAfter is the certificate's expiry; zero when unknown, in which
	// case the entry is never pruned.
	NotAfter       time.Time `json:"notAfter,omitzero"`
	Reason         Reason    `json:"reason"`
	RevokedAt      time.Time `json:"revokedAt"`
	InvalidityDate time.Time `json:"invalidityDate,omitzero"`
	// Requester is who revoked it (admin identity or local user).
	Requester string `json:"requester,omitempty"`
	// Existing is set by Revocations.Revoke on a returned record that
	// this call did not store: the serial was revoked before (its original
	// record is returned), or it came earlier in the same batch. It is
	// never stored, and reads never set it.
	Existing bool `json:"-"`
}

// Revocations keeps revocation records and allocates CRL numbers. Every
// write returns only after it is durable.
type Revocations interface {
	// Revoke stores recs in one durable transaction and returns, in the
	// order of recs, the stored record of each: a serial already revoked
	// keeps (and returns) its original record, marked Existing, so
	// revoking twice is idempotent. The store assigns Seq to the new ones.
	Revoke(ctx context.Context, recs []Revocation) ([]Revocation, error)
	GetRevocation(ctx context.Context, serial string) (Revocation, error)
	// ListRevocations calls fn for each revocation with Seq > since, in Seq
	// order, until fn returns false.
	ListRevocations(ctx context.Context, since uint64, fn func(Revocation) bool) error
	// LastRevocationSeq is the highest Seq committed so far (0 if none).
	LastRevocationSeq(ctx context.Context) (uint64, error)
	// PruneRevocations deletes revocations whose NotAfter is set and
	// before cutoff, and returns how many. Callers pass one CRL period
	// before now, so an unexpired revoked certificate is never dropped.
	PruneRevocations(ctx context.Context, cutoff time.Time) (int, error)
	// NextCRLNumber durably allocates the next CRLNumber of the CRL scope
	// (RFC 5280 section 5.2.3): strictly greater than every number it
	// returned before for scope, across restarts and (for a shared store)
	// replicas. Full and delta CRLs of one scope share the sequence
	// (section 5.2.4). With the number it returns the revocations that
	// CRL covers: those with Seq up to CRLCut.Seq, the highest Seq
	// committed when the number was allocated, read atomically with it.
	NextCRLNumber(ctx context.Context, scope string) (CRLCut, error)
}

// CRLCut is one CRL's place in its scope's history: its CRLNumber and the
// revocations it lists (those with Seq <= Seq). A CRL built from a cut
// lists exactly the revocations up to it, whenever and on whichever
// replica it is built, so a CRL with a greater number never lists less
// than one with a smaller number (less what expired): a relying party
// that takes the greater number as the newer CRL (RFC 5280 section
// 5.2.3) never goes back. Of two cuts of one scope, the one with the
// greater Number has the greater or equal Seq.
type CRLCut struct {
	Number uint64
	Seq    uint64
}

// CRL scopes name a CRL issuer; each has its own CRLNumber sequence
// (Revocations.NextCRLNumber).
const (
	// ScopeRoot is the root's CRL, built by meshca when it holds the root key.
	ScopeRoot = "root"
	// ScopeRootExternal is the root's CRL taken from Vault, a file or a URL.
	ScopeRootExternal = "root-external"
)

// GenerationScope is the scope of the CRL of meshca's CA generation id; it
// is also the file name of its distribution point (<crl.url>/gen-<id>.crl).
func GenerationScope(id uint64) string { return "gen-" + strconv.FormatUint(id, 10) }

// IssuanceIndex finds the issuance records of one identity or one CA
// generation without decoding every record. Each lists every stored record
// that matches, expired or not (until PruneIssuances deletes it), in no
// particular order, until fn returns false; a caller that wants the
// unexpired ones checks NotAfter. A backend documents the cost of each.
type IssuanceIndex interface {
	ListIssuancesByIdentity(ctx context.Context, identity string, fn func(Issuance) bool) error
	ListIssuancesByGeneration(ctx context.Context, generation uint64, fn func(Issuance) bool) error
}

// ExpiryIndex walks the issuance records by NotAfter without decoding
// them: what an inventory of workload certificates needs.
type ExpiryIndex interface {
	// ListExpiries calls fn with the NotAfter and identity of every record
	// whose NotAfter is at or after from, in NotAfter order, until fn
	// returns false.
	ListExpiries(ctx context.Context, from time.Time, fn func(notAfter time.Time, identity string) bool) error
}
