package crl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/identity"
	"github.com/meshca/meshca/ca/store"
)

// Request asks to revoke exactly one of: a serial, every unexpired
// certificate of an identity, or a whole intermediate generation.
type Request struct {
	Serial         string // hex; colons and upper case accepted, stored lower-case
	Identity       string // SPIFFE ID
	Generation     uint64
	Reason         store.Reason
	InvalidityDate time.Time
	Requester      string // the authenticated admin (never caller-chosen text in metrics)
}

// ErrInvalidRequest is wrapped by every error that comes from bad input
// (an admin API answers it with 400, the CLI prints it); nothing was stored.
var ErrInvalidRequest = errors.New("invalid revocation request")

// ErrActiveGeneration is wrapped (with ErrInvalidRequest) when a request
// names the generation meshca signs with.
var ErrActiveGeneration = errors.New("the generation is the active signing intermediate")

// maxSerialOctets is RFC 5280 section 4.1.2.2's limit on serialNumber.
const maxSerialOctets = 20

// Backend is what revocation needs of a store: the revocation records, the
// issuance indexes and the CA generations.
type Backend interface {
	store.Issuances
	store.Generations
	store.Revocations
	store.IssuanceIndex
}

// Revoker records revocations durably; it needs only the store (the CLI
// uses it when no server holds the store; the running service wraps it in
// a Manager that also rebuilds CRLs).
type Revoker struct {
	st  Backend
	clk clock.PassiveClock
	// running: see Options.Running.
	running func(lineage string) bool
}

// NewRevoker returns a Revoker on st; clk stamps revocation times. running
// is Options.Running.
func NewRevoker(st store.Store, clk clock.PassiveClock, running func(lineage string) bool) *Revoker {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Revoker{st: st, clk: clk, running: running}
}

// signs reports whether g's intermediate signs new certificates: it is
// the active generation of a lineage that runs. An active generation of a
// lineage no longer configured signs nothing, and may be revoked.
func (r *Revoker) signs(g *store.Generation) bool {
	return g.Active() && (r.running == nil || g.Lineage() == store.DefaultSigner || r.running(g.Lineage()))
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

// NormalizeSerial is ParseSerial for a revocation request: its errors
// wrap ErrInvalidRequest.
func NormalizeSerial(s string) (string, error) {
	out, err := ParseSerial(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return out, nil
}

// ParseSerial turns a serial as an operator writes it (hex, optional
// colons between octets, any case, e.g. openssl's "4F:A3:...") into the
// store's form: lower-case hex without leading zero octets. It refuses
// anything else and serials longer than 20 octets (RFC 5280 4.1.2.2).
func ParseSerial(s string) (string, error) {
	raw := s
	if len(s) > 3*maxSerialOctets+8 {
		return "", fmt.Errorf("serial %s is too long: a serial number has at most %d octets (RFC 5280 section 4.1.2.2)", identity.Quote(raw), maxSerialOctets)
	}
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if s == "" {
		return "", errors.New("serial is empty; give it in hex as 'openssl x509 -noout -serial' prints it, e.g. 4fa3c1 or 4F:A3:C1")
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("serial %s is not hexadecimal; give it as 'openssl x509 -noout -serial' prints it, e.g. 4fa3c1 or 4F:A3:C1", identity.Quote(raw))
		}
	}
	b, err := SerialBytes(s)
	if err != nil {
		return "", fmt.Errorf("serial %s: a serial number has at most %d octets (RFC 5280 section 4.1.2.2)", identity.Quote(raw), maxSerialOctets)
	}
	if len(b) == 1 && b[0] == 0 {
		return "", fmt.Errorf("serial %s is zero: a serial number is a positive integer (RFC 5280 section 4.1.2.2)", identity.Quote(raw))
	}
	return fmt.Sprintf("%x", b), nil
}

// minInvalidityDate is the earliest invalidity date accepted: no X.509
// key was compromised before 1950, the first year of UTCTime (RFC 5280
// section 4.1.2.5.1); an earlier date is a typing error.
var minInvalidityDate = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)

// checkInvalidityDate bounds an invalidity date: the date on which it is
// known or suspected that the key was compromised (RFC 5280 section
// 5.3.2) is not in the future, not before 1950, and a CRL can carry it.
func checkInvalidityDate(d, now time.Time) error {
	if d.IsZero() {
		return nil
	}
	f := d.UTC().Format(time.RFC3339)
	switch {
	case d.Before(minInvalidityDate):
		return invalid("invalidityDate %s is before 1950; give the date on which the key was known or suspected to be compromised (RFC 5280 section 5.3.2)", f)
	case d.After(now):
		return invalid("invalidityDate %s is in the future: it is when the key was known or suspected to be compromised (RFC 5280 section 5.3.2); give a past date or none", f)
	case !store.TimeEncodable(d):
		return invalid("invalidityDate %s cannot be encoded on a CRL", f)
	}
	return nil
}

// validated is a checked request.
type validated struct {
	serial   string
	identity string
	gen      *store.Generation
	active   *store.Generation
	gens     []store.Generation // every CA generation, as read by validate
}

// validate checks req against the store; it writes nothing.
func (r *Revoker) validate(ctx context.Context, req Request) (validated, error) {
	var v validated
	n := 0
	if req.Serial != "" {
		n++
	}
	if req.Identity != "" {
		n++
	}
	if req.Generation != 0 {
		n++
	}
	if n != 1 {
		return v, invalid("name exactly one of a serial, an identity (SPIFFE ID) or a generation; got %d", n)
	}
	if _, ok := reasonLabels[req.Reason]; !ok {
		return v, invalid("reason %d is not a revocation reason meshca records; use one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (RFC 5280 section 5.3.1)", int(req.Reason))
	}
	if err := checkInvalidityDate(req.InvalidityDate, r.clk.Now()); err != nil {
		return v, err
	}
	gens, err := r.st.ListGenerations(ctx)
	if err != nil {
		return v, fmt.Errorf("read CA generations: %w", err)
	}
	v.gens = gens
	for i := range gens {
		// Unknown serials go on the default signer's active CRL; the
		// refusal below to revoke an active intermediate holds for every
		// signer lineage.
		if gens[i].Active() && gens[i].Lineage() == store.DefaultSigner {
			v.active = &gens[i]
		}
	}
	switch {
	case req.Serial != "":
		if v.serial, err = NormalizeSerial(req.Serial); err != nil {
			return v, err
		}
		// A generation's intermediate named by its serial is revoked as
		// that generation: on the root's CRL, not as an unknown leaf on
		// the active generation's CRL (which no relying party consults
		// for the intermediate, RFC 5280 section 6.3).
		var match *store.Generation
		for i := range gens {
			c, err := parseCert(gens[i].CertDER)
			if err != nil {
				return v, fmt.Errorf("CA generation %d: stored certificate does not parse: %w", gens[i].ID, err)
			}
			if fmt.Sprintf("%x", c.SerialNumber.Bytes()) != v.serial {
				continue
			}
			// Every generation with the serial is checked: one
			// certificate may be recorded twice (a pre-issued
			// intermediate whose first record was left prepared).
			if r.signs(&gens[i]) {
				return v, fmt.Errorf("%w: %w: serial %s is the intermediate certificate of generation %d, which signs every new certificate; rotate to a new intermediate first, then revoke generation %d",
					ErrInvalidRequest, ErrActiveGeneration, v.serial, gens[i].ID, gens[i].ID)
			}
			switch {
			case match == nil:
				match = &gens[i]
			case !bytes.Equal(match.CertDER, gens[i].CertDER):
				// Serials are unique per issuer only (RFC 5280 section
				// 4.1.2.2): two enterprise CAs may have used the same one.
				return v, invalid("serial %s is the serial of two different intermediate certificates, those of generations %d and %d (issued by different CAs); name the one to revoke: meshca revoke --generation N",
					v.serial, match.ID, gens[i].ID)
			}
		}
		if match != nil {
			v.serial, v.gen = "", match
		}
	case req.Identity != "":
		id, err := identity.Parse(req.Identity)
		if err != nil {
			return v, invalid("identity: %v", err)
		}
		v.identity = id.String()
	default:
		for i := range gens {
			if gens[i].ID == req.Generation {
				v.gen = &gens[i]
			}
		}
		if v.gen == nil {
			return v, invalid("generation %d does not exist; 'meshca status' lists the CA generations", req.Generation)
		}
		if r.signs(v.gen) {
			return v, fmt.Errorf("%w: %w: generation %d signs every new certificate, so meshca would keep issuing under a revoked intermediate; rotate to a new intermediate first, then revoke generation %d",
				ErrInvalidRequest, ErrActiveGeneration, req.Generation, req.Generation)
		}
		for i := range gens {
			// The same certificate recorded again and activated there.
			if gens[i].ID != v.gen.ID && r.signs(&gens[i]) && bytes.Equal(gens[i].CertDER, v.gen.CertDER) {
				return v, fmt.Errorf("%w: %w: generation %d records the same intermediate certificate as generation %d, which signs every new certificate; rotate to a new intermediate first, then revoke generation %d",
					ErrInvalidRequest, ErrActiveGeneration, req.Generation, gens[i].ID, req.Generation)
			}
		}
	}
	return v, nil
}

// Revoke validates req, expands it into revocation records and stores them
// durably (store.Revocations.Revoke) before it returns them. A bad request
// wraps ErrInvalidRequest and stores nothing. Revoking a certificate twice
// returns its original record.
func (r *Revoker) Revoke(ctx context.Context, req Request) ([]store.Revocation, error) {
	v, err := r.validate(ctx, req)
	if err != nil {
		return nil, err
	}
	now := r.clk.Now().UTC()
	base := store.Revocation{
		Kind: store.KindLeaf, Reason: req.Reason, RevokedAt: now, Requester: req.Requester,
	}
	if !req.InvalidityDate.IsZero() {
		base.InvalidityDate = req.InvalidityDate.UTC()
	}
	var recs []store.Revocation
	fromIssuance := func(is store.Issuance) store.Revocation {
		rec := base
		rec.Serial, rec.Known, rec.Identity, rec.NotAfter, rec.Generation = is.Serial, true, is.Identity, is.NotAfter, is.Generation
		return rec
	}
	switch {
	case v.serial != "":
		is, err := r.st.GetIssuance(ctx, v.serial)
		switch {
		case err == nil:
			recs = append(recs, fromIssuance(is))
		case errors.Is(err, store.ErrNotFound):
			// Unknown serials are recorded (as Vault allows); they go on the
			// active generation's CRL and are never pruned.
			if v.active == nil {
				return nil, invalid("serial %s is not in the issuance records and there is no active CA generation whose CRL could list it; "+
					"run 'meshca init' or rotate first, or revoke it where it was issued", v.serial)
			}
			rec := base
			rec.Serial = v.serial
			rec.Generation = v.active.ID
			recs = append(recs, rec)
		default:
			return nil, fmt.Errorf("read issuance record: %w", err)
		}
	case v.identity != "":
		err := r.st.ListIssuancesByIdentity(ctx, v.identity, func(is store.Issuance) bool {
			if is.NotAfter.After(now) {
				recs = append(recs, fromIssuance(is))
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("list the certificates of %s: %w", identity.Quote(v.identity), err)
		}
		if len(recs) == 0 {
			return nil, invalid("identity %s has no unexpired certificate in the issuance records; nothing to revoke", identity.Quote(v.identity))
		}
	default:
		rec, err := intermediateRevocation(base, *v.gen)
		if err != nil {
			return nil, err
		}
		// Revoking twice returns the original record; but a leaf record
		// under the intermediate's serial (stored by an older meshca that
		// took it for an unknown leaf) would come back in its place and
		// the root CRL would never list the intermediate. A stored
		// revocation is never rewritten, so the conflict is refused and
		// explained rather than acknowledged as done.
		old, err := r.st.GetRevocation(ctx, rec.Serial)
		switch {
		case err == nil && old.Kind != store.KindIntermediate:
			return nil, invalid("the intermediate certificate of generation %d (serial %s) is already recorded as a leaf revocation (seq %d), "+
				"which an older meshca stored for a serial it did not recognise; that record lists it on a generation's CRL, where no relying party looks for an intermediate, and meshca cannot change a stored revocation, so the root CRL will not list generation %d: "+
				"stop trusting it by removing generation %d's intermediate from every trust bundle, or revoke it at the root's CA", v.gen.ID, rec.Serial, old.Seq, v.gen.ID, v.gen.ID)
		case err == nil && old.Generation != v.gen.ID && !sameCertificate(v.gens, old.Generation, v.gen):
			// Revocations are recorded by serial: another CA certificate
			// with this serial (from another issuer) was revoked first,
			// and that record would come back in this one's place.
			return nil, invalid("the intermediate certificate of generation %d (serial %s) has the serial of generation %d's, a different CA certificate already revoked (seq %d); meshca records one revocation per serial, so it cannot record this one: "+
				"stop trusting generation %d by removing its intermediate from every trust bundle, or revoke it at the root's CA", v.gen.ID, rec.Serial, old.Generation, old.Seq, v.gen.ID)
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("read revocation record: %w", err)
		}
		recs = append(recs, rec)
	}
	return r.st.Revoke(ctx, recs)
}

// sameCertificate says whether generation id of gens records the same
// certificate as g (one certificate recorded twice: a pre-issued
// intermediate whose first record was left prepared).
func sameCertificate(gens []store.Generation, id uint64, g *store.Generation) bool {
	for i := range gens {
		if gens[i].ID == id {
			return bytes.Equal(gens[i].CertDER, g.CertDER)
		}
	}
	return false
}

// intermediateRevocation is the record of a revoked generation: the
// intermediate certificate's serial, listed on the root's CRL. Its leaves
// need no entries of their own: a relying party that checks the chain's
// CRLs (RFC 5280 section 6.3) rejects them through the intermediate.
func intermediateRevocation(base store.Revocation, g store.Generation) (store.Revocation, error) {
	c, err := parseCert(g.CertDER)
	if err != nil {
		return store.Revocation{}, fmt.Errorf("CA generation %d: stored certificate does not parse: %w", g.ID, err)
	}
	rec := base
	rec.Kind = store.KindIntermediate
	rec.Serial = fmt.Sprintf("%x", c.SerialNumber.Bytes())
	rec.Generation = g.ID
	rec.Known = true
	rec.NotAfter = c.NotAfter.UTC()
	return rec, nil
}
