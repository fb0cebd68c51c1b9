package authority

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// PreIssued loads the pre-issued intermediate of src
// (root.file.cacertsDir). When it is recorded as the active generation
// for the configured profile it returns its material and a nil record;
// otherwise its material (Generation 0) and the record to activate, which
// the caller (the rotation manager) does: a new one to add (ID 0), or the
// one an earlier start added and did not activate (preparedPreIssued).
// createAltKey lets it create the ML-DSA key a catalyst CA needs when none is known;
// without it that case is an *UnusableError.
//
// Under the catalyst profile the intermediate needs an ML-DSA key: when
// ca-cert.pem carries one (2.5.29.72), its private half must be in
// ca-pq-key.pem next to it; otherwise (an intermediate issued by a
// classical enterprise CA) meshca holds its own ML-DSA key in the key
// store, recorded with the generation, and that key is the post-quantum
// trust anchor: the leaves' alternative signatures verify under it directly.
func (l *Loader) PreIssued(ctx context.Context, src root.PreIssuedSource, createAltKey bool) (*Material, *store.Generation, error) {
	pi, err := src.PreIssued(l.Now())
	if err != nil {
		return nil, nil, err
	}
	b, key := pi.Bundle, root.CAKey{Signer: pi.Key}
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA generations: %w", err)
	}
	fp := Fingerprint(b.Cert)
	if err := l.refuseRevokedPreIssued(ctx, b.Cert); err != nil {
		return nil, nil, err
	}
	var known *store.Generation // the active record of this intermediate
	for i := range gens {
		if g := gens[i]; g.Fingerprint == fp && g.Active() && g.Lineage() == store.DefaultSigner && ProfileOf(g) == l.profile() {
			known = &gens[i]
		}
	}
	var prepared *store.Generation
	if known == nil {
		prepared = l.preparedPreIssued(gens, src, pi)
	}
	altRef := ""
	if l.profile() == profile.Catalyst {
		recorded := known
		if recorded == nil {
			recorded = prepared // its ML-DSA key, rather than another one
		}
		if key.Alt, altRef, err = l.caCertsAltKey(pi, recorded, createAltKey); err != nil {
			return nil, nil, err
		}
	}
	if known != nil && known.AltKeyRef == altRef {
		m, err := NewMaterial(known.ID, b, key, l.profile())
		return m, nil, err
	}
	m, err := NewMaterial(0, b, key, l.profile())
	if err != nil {
		return nil, nil, err
	}
	rec := NewGenerationRecord(b, pi.KeyRef, altRef, src.Kind(), l.profile(), l.Now())
	if prepared != nil && prepared.AltKeyRef == altRef && slices.EqualFunc(prepared.ChainDER, rec.ChainDER, bytes.Equal) {
		// Activate that record rather than add the same certificate again.
		rec = *prepared
	}
	return m, &rec, nil
}

// preparedPreIssued is the newest record of the pre-issued intermediate pi
// that an earlier start added but did not activate (it crashed, or lost
// the Lease, in between), which the next start may activate instead of
// recording the certificate again; nil if there is none that can be. A
// record is passed over when it is abandoned (store.States: a newer
// generation was activated since; the operator was told to revoke it and
// delete its keys) or, under the catalyst profile, its recorded ML-DSA key
// no longer loads as the configured algorithm. (A revoked one never gets
// here: refuseRevokedPreIssued.)
func (l *Loader) preparedPreIssued(gens []store.Generation, src root.PreIssuedSource, pi *root.PreIssuedCA) *store.Generation {
	fp := Fingerprint(pi.Bundle.Cert)
	states := store.States(gens)
	for i := len(gens) - 1; i >= 0; i-- {
		g := &gens[i]
		if g.Fingerprint != fp || g.Lineage() != store.DefaultSigner || ProfileOf(*g) != l.profile() ||
			states[g.ID] != store.StatePrepared || g.Source != src.Kind() || g.KeyRef != pi.KeyRef {
			continue
		}
		if l.profile() == profile.Catalyst && g.AltKeyRef != "" {
			k, err := l.Keys.LoadPQ(g.AltKeyRef)
			if err != nil || keyName(k.Public()) != l.Config.Intermediate.PQAlgorithm {
				l.log().Warn("a record of the pre-issued intermediate was left prepared by an earlier start, but its ML-DSA key is gone or another algorithm; recording it again",
					"generation", g.ID, "alt_key_ref", g.AltKeyRef, "error", err)
				return nil
			}
		}
		return g
	}
	return nil
}

// refuseRevokedPreIssued is an error when the store records cert, the
// pre-issued intermediate, as a revoked CA generation, whichever record of
// it was revoked (revocationOf). Revocation is of the certificate, its
// issuer and serial number (RFC 5280 section 5.3), not of a meshca record:
// recording it again under a new generation would sign under a CA that
// relying parties are told not to trust. meshca cannot mint a replacement
// under an enterprise root it does not hold, so the operator must install
// one.
func (l *Loader) refuseRevokedPreIssued(ctx context.Context, cert *x509.Certificate) error {
	rev, err := l.revocationOf(ctx, cert, 0)
	switch {
	case err != nil:
		return fmt.Errorf("root.file.cacertsDir: read the revocation of serial %x: %w", cert.SerialNumber.Bytes(), err)
	case rev != nil:
		return fmt.Errorf("root.file.cacertsDir: the intermediate in %s (%q, serial %s) was revoked as CA generation %d on %s (reason %s); meshca does not sign under a revoked CA: install a new intermediate issued by your enterprise CA in root.file.cacertsDir",
			root.CACertFile, cert.Subject.String(), rev.Serial, rev.Generation, rev.RevokedAt.UTC().Format(time.RFC3339), rev.Reason)
	}
	return nil
}

// caCertsAltKey returns the ML-DSA key of a pre-issued catalyst
// intermediate and its reference: ca-pq-key.pem when ca-cert.pem carries
// 2.5.29.72, else the key recorded for it, else (when create is set) a new
// one.
func (l *Loader) caCertsAltKey(pi *root.PreIssuedCA, known *store.Generation, create bool) (key keys.PQSigner, ref string, err error) {
	alg := l.Config.Intermediate.PQAlgorithm
	b := pi.Bundle
	spki, err := root.AltPublicKeyInfo(b.Cert)
	if err != nil {
		return nil, "", fmt.Errorf("root.file.cacertsDir: %s: %w", root.CACertFile, err)
	}
	if spki != nil {
		ref = pi.AltKeyRef
		if key, err = l.Keys.LoadPQ(ref); err != nil {
			return nil, "", fmt.Errorf("root.file.cacertsDir: %s carries an ML-DSA alternative public key (2.5.29.72), so its private key must be in %s: %w", root.CACertFile, root.CAPQKeyFile, err)
		}
		if err := root.CheckAltKeyMatches(b.Cert, key); err != nil {
			return nil, "", fmt.Errorf("root.file.cacertsDir: %s: %w", ref, err)
		}
		return key, ref, nil
	}
	if known != nil && known.AltKeyRef != "" {
		if key, err = l.Keys.LoadPQ(known.AltKeyRef); err != nil {
			return nil, "", fmt.Errorf("CA generation %d: %w", known.ID, err)
		}
		if keyName(key.Public()) == alg {
			return key, known.AltKeyRef, nil
		}
	}
	if !create {
		return nil, "", &UnusableError{Msg: fmt.Sprintf("the pre-issued intermediate %q needs a new ML-DSA key (%s) for intermediate.profile catalyst", b.Cert.Subject, alg)}
	}
	name := "cacerts-" + l.Now().UTC().Format("20060102T150405.000000000Z") + "-" + strings.ToLower(alg)
	key, ref, err = l.Keys.CreatePQ(name, alg)
	if err != nil {
		return nil, "", err
	}
	l.log().Info("created meshca's own ML-DSA key for the pre-issued intermediate; it is the post-quantum trust anchor",
		"subject", b.Cert.Subject.String(), "pq_algorithm", alg, "alt_key_ref", ref)
	return key, ref, nil
}
