package authority

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store"
)

// loadCACerts loads a pre-issued intermediate (mode b) and records it as a
// generation the first time it is seen for the configured profile.
//
// Under the catalyst profile the intermediate needs an ML-DSA key: when
// ca-cert.pem carries one (2.5.29.72), its private half must be in
// ca-pq-key.pem next to it; otherwise (an intermediate issued by a
// classical enterprise CA) meshca holds its own ML-DSA key in the key
// store, recorded with the generation, and that key is the post-quantum
// trust anchor: the leaves' alternative signatures verify under it directly.
func (l *Loader) loadCACerts(ctx context.Context, dir string) (*Material, error) {
	b, signer, err := root.LoadCACertsDir(dir, l.Keys.Signer, l.now())
	if err != nil {
		return nil, fmt.Errorf("root.file.cacertsDir: %w", err)
	}
	key := root.CAKey{Signer: signer}
	if err := checkRootForProfile(key, l.profile()); err != nil {
		return nil, fmt.Errorf("root.file.cacertsDir %s: %s: %w", dir, root.CACertFile, err)
	}
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
		if key.Alt, altRef, err = l.caCertsAltKey(dir, b, known); err != nil {
			return nil, err
		}
	}
	if known != nil && known.AltKeyRef == altRef {
		return NewMaterial(known.ID, b, key, l.profile())
	}
	g, err := l.record(ctx, b, filepath.Join(dir, root.CAKeyFile), altRef, SourceFileCACerts, l.now())
	if err != nil {
		return nil, err
	}
	return NewMaterial(g.ID, b, key, l.profile())
}

// caCertsAltKey returns the ML-DSA key of a pre-issued catalyst
// intermediate and its reference: ca-pq-key.pem when ca-cert.pem carries
// 2.5.29.72, else the key recorded for it, else a new one.
func (l *Loader) caCertsAltKey(dir string, b *root.Bundle, known *store.Generation) (key keys.PQSigner, ref string, err error) {
	alg := l.Config.Intermediate.PQAlgorithm
	spki, err := root.AltPublicKeyInfo(b.Cert)
	if err != nil {
		return nil, "", fmt.Errorf("root.file.cacertsDir: %s: %w", root.CACertFile, err)
	}
	if spki != nil {
		ref = filepath.Join(dir, root.CAPQKeyFile)
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
	name := "cacerts-" + l.now().UTC().Format("20060102T150405.000000000Z") + "-" + strings.ToLower(alg)
	key, ref, err = l.Keys.CreatePQ(name, alg)
	if err != nil {
		return nil, "", err
	}
	l.log().Info("created meshca's own ML-DSA key for the pre-issued intermediate; it is the post-quantum trust anchor",
		"subject", b.Cert.Subject.String(), "pq_algorithm", alg, "alt_key_ref", ref)
	return key, ref, nil
}
