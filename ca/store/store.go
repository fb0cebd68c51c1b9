// Package store defines meshca's durable records and the small interfaces
// the CA needs to keep them: issuance records, CA generations, revocations
// and alert states. Backends live in sub-packages (boltstore, the embedded
// file; pgstore, PostgreSQL shared by replicas) and storeopen picks one by
// configuration; this package holds no storage code of its own.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// Issuance is the durable record of one issued certificate.
type Issuance struct {
	// Serial is the certificate serial number in lower-case hex.
	Serial string `json:"serial"`
	// Identity is the authenticated SPIFFE ID the certificate was issued to.
	Identity  string    `json:"identity"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// Fingerprint is the SHA-256 of the certificate DER, lower-case hex.
	Fingerprint string `json:"fingerprint"`
	// Profile is the issuance profile (classical, catalyst, ...).
	Profile string `json:"profile"`
	// Requester describes who asked: front door and authenticated caller.
	Requester string `json:"requester"`
	// Generation is the CA generation that signed it.
	Generation uint64    `json:"generation"`
	IssuedAt   time.Time `json:"issuedAt"`
}

// Generation records one signing intermediate and its place in the
// rotation journal: added (prepared), verified, activated, retired.
type Generation struct {
	ID uint64 `json:"id"`
	// CertDER is the intermediate certificate.
	CertDER []byte `json:"certDER"`
	// ChainDER holds the certificates above CertDER, up to and including the root.
	ChainDER [][]byte `json:"chainDER"`
	// KeyRef locates the private key in the key store (a file path or a KMS
	// URI); never the key itself.
	KeyRef string `json:"keyRef"`
	// AltKeyRef locates the ML-DSA key of a catalyst CA, which signs the
	// alternative signatures (2.5.29.73/.74); empty for other profiles.
	AltKeyRef string `json:"altKeyRef,omitempty"`
	// Profile is the kind of CA (classical, catalyst, composite, mldsa);
	// empty in records written before profiles existed, which means classical.
	Profile string `json:"profile,omitempty"`
	// Signer names the signer lineage the generation belongs to: a signer
	// with its own intermediate (authentication.certSigners[].intermediate
	// "separate") keeps a journal of its own. Empty is the default signer,
	// so records written before lineages existed read unchanged.
	Signer string `json:"signer,omitempty"`
	// Source says where the generation came from ("file-minted", "file-cacerts", "vault").
	Source      string    `json:"source"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"createdAt"`
	// VerifiedAt is when a throwaway leaf signed with the generation
	// verified (MarkGenerationVerified); zero if never, and in records
	// written before the rotation journal.
	VerifiedAt  time.Time `json:"verifiedAt,omitzero"`
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
	RetiredAt   time.Time `json:"retiredAt,omitzero"`
}

// GenerationState is where a generation is in its lifecycle.
type GenerationState string

// Generation states. A generation is added PREPARED, becomes ACTIVE when
// activated and RETIRED when another one of its signer lineage is activated.
// At most one generation per lineage is ACTIVE, and once one has been
// activated in a lineage there always is one.
const (
	StatePrepared GenerationState = "prepared"
	StateActive   GenerationState = "active"
	StateRetired  GenerationState = "retired"
	// StateAbandoned is never recorded: States derives it for a prepared
	// generation that can no longer be activated.
	StateAbandoned GenerationState = "abandoned"
)

// LastActivated is the newest generation of lineage in gens that was
// ever activated (active or retired); 0 if none. Only a generation
// prepared after it can succeed the active one.
func LastActivated(gens []Generation, lineage string) uint64 {
	var last uint64
	for _, g := range gens {
		if g.Lineage() == lineage && g.State() != StatePrepared && g.ID > last {
			last = g.ID
		}
	}
	return last
}

// States returns the state of each of gens (by ID) as the lineage sees
// it: State, except that a prepared generation older than one of its
// lineage that was activated is abandoned. Only a generation prepared
// after the last activation may succeed the active one; an older one lost
// the Lease or a race while it was being prepared, or a rotation was
// retried, and stays unused. Its intermediate certificate is still valid
// and its keys are still in the key store.
//
// A prepared record of a certificate that another generation activated
// (a pre-issued intermediate recorded twice, the first record left
// prepared by a lost Lease) is not abandoned: its certificate and keys
// are in use. It stays prepared.
func States(gens []Generation) map[uint64]GenerationState {
	inUse := map[string]bool{}  // certificate DER
	last := map[string]uint64{} // lineage: LastActivated
	for _, g := range gens {
		if g.State() == StatePrepared {
			continue
		}
		if len(g.CertDER) > 0 {
			inUse[string(g.CertDER)] = true
		}
		last[g.Lineage()] = max(last[g.Lineage()], g.ID)
	}
	out := make(map[uint64]GenerationState, len(gens))
	for _, g := range gens {
		st := g.State()
		if st == StatePrepared && g.ID < last[g.Lineage()] && !inUse[string(g.CertDER)] {
			st = StateAbandoned
		}
		out[g.ID] = st
	}
	return out
}

// State derives g's state from its journal times (so that records written
// before states existed read correctly: activated and not retired is
// active).
func (g Generation) State() GenerationState {
	switch {
	case !g.RetiredAt.IsZero():
		return StateRetired
	case !g.ActivatedAt.IsZero():
		return StateActive
	}
	return StatePrepared
}

// DefaultSigner is the lineage of the default signer (Generation.Signer empty).
const DefaultSigner = ""

// Lineage returns the signer lineage g belongs to.
func (g Generation) Lineage() string { return g.Signer }

// Active reports whether g is currently the signing generation.
func (g Generation) Active() bool { return g.State() == StateActive }

// Prepared reports whether g was added but never activated.
func (g Generation) Prepared() bool { return g.State() == StatePrepared }

// ErrRetired is matched by the error of ActivateGeneration for a retired
// generation: a retired intermediate is never activated again.
var ErrRetired = errors.New("generation is retired")

// Issuances keeps issuance records.
type Issuances interface {
	// PutIssuance stores rec durably; it returns only after the record is on disk.
	PutIssuance(ctx context.Context, rec Issuance) error
	GetIssuance(ctx context.Context, serial string) (Issuance, error)
	// ListIssuances calls fn for each record in serial order until fn returns false.
	ListIssuances(ctx context.Context, fn func(Issuance) bool) error
	// PruneIssuances deletes records whose NotAfter is before cutoff and returns how many.
	PruneIssuances(ctx context.Context, cutoff time.Time) (int, error)
}

// Reserver is implemented by stores that commit concurrent records in
// groups. A signer reserves the record it is about to write as soon as it
// starts signing, so that a commit can wait briefly for records that are
// already on their way instead of paying a commit (and its fsyncs) for each
// one alone: the idea of PostgreSQL's commit_delay and commit_siblings.
type Reserver interface {
	Reserve() Reservation
}

// Reservation is one reserved record. Exactly one of PutIssuance or
// Cancel must be called; Cancel after PutIssuance does nothing, so it can
// be deferred.
type Reservation interface {
	// PutIssuance is Issuances.PutIssuance for the reserved record.
	PutIssuance(ctx context.Context, rec Issuance) error
	Cancel()
}

// Generations keeps the CA generations.
type Generations interface {
	// AddGeneration stores g with a new ID and returns it. Its
	// ActivatedAt and RetiredAt are ignored: a new generation is prepared.
	AddGeneration(ctx context.Context, g Generation) (Generation, error)
	// MarkGenerationVerified records that id verified at at (journal step
	// between prepared and active). ErrNotFound for an unknown id.
	MarkGenerationVerified(ctx context.Context, id uint64, at time.Time) error
	// ActivateGeneration makes id the active generation of its signer
	// lineage (Generation.Signer) and retires that lineage's previous one,
	// in one transaction: never two active in a lineage, never none; other
	// lineages are untouched.
	// Activating the active generation changes nothing; ErrNotFound for
	// an unknown id, ErrRetired for a retired one (nothing changes).
	ActivateGeneration(ctx context.Context, id uint64, at time.Time) error
	ListGenerations(ctx context.Context) ([]Generation, error)
}

// Store is everything a meshca backend provides.
type Store interface {
	Issuances
	IssuanceIndex
	Generations
	Revocations
	AlertStates
	Close() error
}
