package authority

import (
	"context"
	"fmt"
	"strings"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// PreIssued loads the pre-issued intermediate of src
// (root.file.cacertsDir). When it is recorded as the active generation
// for the configured profile it returns its material and a nil record;
// otherwise its material (Generation 0) and the record to add and
// activate, which the caller (the rotation manager) does. createAltKey
// lets it create the ML-DSA key a catalyst CA needs when none is known;
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
	var known *store.Generation
	for i := range gens {
		if g := gens[i]; g.Fingerprint == fp && g.Active() && g.Lineage() == store.DefaultSigner && ProfileOf(g) == l.profile() {
			known = &gens[i]
		}
	}
	altRef := ""
	if l.profile() == profile.Catalyst {
		if key.Alt, altRef, err = l.caCertsAltKey(pi, known, createAltKey); err != nil {
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
	return m, &rec, nil
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
