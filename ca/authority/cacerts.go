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

// loadPreIssued loads a pre-issued intermediate (root.file.cacertsDir) and,
// when record is set, records it as a generation the first time it is
// seen for the configured profile; read-only (record false) it must be
// recorded already.
//
// Under the catalyst profile the intermediate needs an ML-DSA key: when
// ca-cert.pem carries one (2.5.29.72), its private half must be in
// ca-pq-key.pem next to it; otherwise (an intermediate issued by a
// classical enterprise CA) meshca holds its own ML-DSA key in the key
// store, recorded with the generation, and that key is the post-quantum
// trust anchor: the leaves' alternative signatures verify under it directly.
func (l *Loader) loadPreIssued(ctx context.Context, src root.PreIssuedSource, record bool) (*Material, error) {
	pi, err := src.PreIssued(l.now())
	if err != nil {
		return nil, err
	}
	b, key := pi.Bundle, root.CAKey{Signer: pi.Key}
	gens, err := l.Store.ListGenerations(ctx)
	if err != nil {
		return nil, fmt.Errorf("read CA generations: %w", err)
	}
	fp := Fingerprint(b.Cert)
	var known *store.Generation
	for i := range gens {
		if g := gens[i]; g.Fingerprint == fp && g.Active() && profileOf(g) == l.profile() {
			known = &gens[i]
		}
	}
	altRef := ""
	if l.profile() == profile.Catalyst {
		if key.Alt, altRef, err = l.caCertsAltKey(pi, known, record); err != nil {
			return nil, err
		}
	}
	if known != nil && known.AltKeyRef == altRef {
		return NewMaterial(known.ID, b, key, l.profile())
	}
	if !record {
		return nil, readOnlyError(notReusable{msg: fmt.Sprintf("the pre-issued intermediate %q in root.file.cacertsDir is not the active CA generation for intermediate.profile %s", b.Cert.Subject, l.profile())})
	}
	g, err := l.record(ctx, b, pi.KeyRef, altRef, l.Root.Kind(), l.now())
	if err != nil {
		return nil, err
	}
	return NewMaterial(g.ID, b, key, l.profile())
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
		return nil, "", readOnlyError(notReusable{msg: fmt.Sprintf("the pre-issued intermediate %q needs a new ML-DSA key (%s) for intermediate.profile catalyst", b.Cert.Subject, alg)})
	}
	name := "cacerts-" + l.now().UTC().Format("20060102T150405.000000000Z") + "-" + strings.ToLower(alg)
	key, ref, err = l.Keys.CreatePQ(name, alg)
	if err != nil {
		return nil, "", err
	}
	l.log().Info("created meshca's own ML-DSA key for the pre-issued intermediate; it is the post-quantum trust anchor",
		"subject", b.Cert.Subject.String(), "pq_algorithm", alg, "alt_key_ref", ref)
	return key, ref, nil
}
