package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/rotation"
)

// Paths of the revocation, CRL and status routes.
const (
	pathRevocations = "/v1/revocations"
	pathCRLs        = "/v1/crls"
	pathStatus      = "/v1/status"
)

// RevokeRequest asks the running service to revoke exactly one of a
// serial, every unexpired certificate of an identity, or a whole
// intermediate generation. Requester is set by the server from the
// authenticated caller, never from the body.
type RevokeRequest struct {
	Serial         string
	Identity       string
	Generation     uint64
	Reason         store.Reason
	InvalidityDate time.Time
	Requester      string
}

// Revoker records revocations durably (and has the CRLs rebuilt). An error
// that wraps a caerr InvalidArgument is bad input: the API answers 400 and
// nothing was stored.
type Revoker interface {
	Revoke(ctx context.Context, req RevokeRequest) ([]store.Revocation, error)
}

// RevocationNoticer is implemented by a Revoker that can say what the
// operator should know about stored records (one that no CRL will list).
type RevocationNoticer interface {
	RevocationNotices(ctx context.Context, recs []store.Revocation) []string
}

// RevocationLister lists the stored revocations in Seq order.
type RevocationLister interface {
	ListRevocations(ctx context.Context, since uint64, fn func(store.Revocation) bool) error
}

// CRL is one CRL the service currently serves.
type CRL struct {
	// Scope is "gen-<id>", "root", "root-<hex>" (crl.RootScope: the other
	// root in force during a root rotation), "root-external" or
	// "root-external-<hex>" (crl.ExternalScope: the other Vault root in
	// force during a root rotation).
	Scope      string
	Delta      bool
	Number     uint64
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
}

// CRLSource gives every CRL currently served, full and delta.
type CRLSource interface {
	CRLs() []CRL
}

// StatusSource reports the CA's state; the CRLs are added from CRLSource.
type StatusSource interface {
	Status(ctx context.Context) Status
}

// Status is the answer of GET /v1/status.
type Status struct {
	TrustDomain string `json:"trustDomain"`
	// Generation is the active intermediate generation.
	Generation           uint64    `json:"generation"`
	Profile              string    `json:"profile"`
	IntermediateSubject  string    `json:"intermediateSubject"`
	IntermediateNotAfter time.Time `json:"intermediateNotAfter"`
	Store                Health    `json:"store"`
	// LastRevocationSeq is the sequence number of the latest revocation.
	LastRevocationSeq uint64 `json:"lastRevocationSeq"`
	// Generations are every CA generation in the store, oldest first.
	Generations []GenerationInfo `json:"generations"`
	CRLs        []CRLInfo        `json:"crls"`
	// GeneratedAt is when the answer was assembled, by the answering
	// side's clock; every health and "in 12d" is relative to it.
	GeneratedAt time.Time `json:"generatedAt,omitzero"`
	// Certificates are every CA certificate known: the roots published,
	// the active intermediate, prepared and still-published retired
	// generations, and (while serve runs with a cluster) those of the
	// cacerts Secret and the ClusterTrustBundles. See statusinfo.go.
	Certificates []CertificateInfo `json:"certificates"`
	// Bundles are the objects that hold CA certificates, each with its
	// earliest expiry.
	Bundles []BundleInfo `json:"bundles"`
	// Rotation is the state of each rotating controller.
	Rotation []rotation.Status `json:"rotation"`
	// Alerts are the alerts firing now.
	Alerts []AlertInfo `json:"alerts"`
	// Problems are the sources that could not be read completely (an
	// informer not synced, a certificate that does not parse); what they
	// did give is still listed.
	Problems []string `json:"problems,omitempty"`
}

// Health is the state of one dependency.
type Health struct {
	Path    string `json:"path,omitempty"`
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
}

// CRLInfo describes a served CRL without its bytes (GET /v1/crls).
type CRLInfo struct {
	Scope      string    `json:"scope"`
	Delta      bool      `json:"delta"`
	Number     uint64    `json:"number"`
	ThisUpdate time.Time `json:"thisUpdate"`
	NextUpdate time.Time `json:"nextUpdate"`
	Size       int       `json:"size"`
	// Health is HealthOK or HealthStale (past nextUpdate).
	Health string `json:"health,omitempty"`
}

// CRLsResponse is the answer of GET /v1/crls.
type CRLsResponse struct {
	CRLs []CRLInfo `json:"crls"`
}

// RevokeBody is the JSON body of POST /v1/revocations.
type RevokeBody struct {
	Serial     string `json:"serial,omitempty"`
	Identity   string `json:"identity,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	// Reason is the RFC 5280 section 5.3.1 name ("keyCompromise") or
	// number (1).
	Reason ReasonField `json:"reason"`
	// InvalidityDate (RFC 5280 section 5.3.2) is RFC 3339; optional.
	InvalidityDate string `json:"invalidityDate,omitempty"`
}

// RevokeResponse holds the stored records, in the order the revoker gave
// them; a serial revoked before keeps its original record, and is listed
// in AlreadyRevoked too (the request changed nothing for it).
type RevokeResponse struct {
	Revocations    []store.Revocation `json:"revocations"`
	AlreadyRevoked []string           `json:"alreadyRevoked,omitempty"`
	// Notices say what the operator should know about the records (one
	// that no CRL meshca publishes will list, and what to do about it).
	Notices []string `json:"notices,omitempty"`
}

// ReasonField is a revocation reason as a name or a number; it holds the
// text as sent until the server parses it with store.ParseReason.
type ReasonField string

// UnmarshalJSON accepts a JSON string or an integer.
func (r *ReasonField) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*r = ReasonField(s)
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("reason must be an RFC 5280 reason name or number")
	}
	*r = ReasonField(strconv.Itoa(n))
	return nil
}

// Request checks the body and turns it into a RevokeRequest. It checks
// what needs no store (one selector, the reason, the date); the revoker
// checks the serial's format and that an identity or generation exists.
func (b RevokeBody) Request() (RevokeRequest, error) {
	n := 0
	for _, set := range []bool{b.Serial != "", b.Identity != "", b.Generation != 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return RevokeRequest{}, fmt.Errorf("name exactly one of serial, identity or generation (got %d)", n)
	}
	if b.Reason == "" {
		return RevokeRequest{}, errors.New("reason is required: an RFC 5280 reason name such as keyCompromise, superseded or cessationOfOperation, or its number")
	}
	reason, err := store.ParseReason(string(b.Reason))
	if err != nil {
		return RevokeRequest{}, err
	}
	req := RevokeRequest{Serial: b.Serial, Identity: b.Identity, Generation: b.Generation, Reason: reason}
	if b.InvalidityDate != "" {
		if req.InvalidityDate, err = time.Parse(time.RFC3339, b.InvalidityDate); err != nil {
			return RevokeRequest{}, fmt.Errorf("invalidityDate must be an RFC 3339 time such as 2026-12-05T10:00:00Z: %w", err)
		}
	}
	return req, nil
}

func crlInfo(c CRL) CRLInfo {
	return CRLInfo{Scope: c.Scope, Delta: c.Delta, Number: c.Number, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, Size: len(c.DER)}
}
