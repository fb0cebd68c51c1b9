package authority

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/meshca/meshca/ca/config"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// loadRoot reads root-cert.pem (first certificate is the signing root; any
// others are additional trust anchors, e.g. during root rotation) and its
// keys: rootKey, and for a Catalyst root (one that carries 2.5.29.72) under
// the catalyst profile its ML-DSA key rootPQKey. The root must suit the
// profile: classical (or Catalyst) for classical and catalyst CAs, composite
// or ML-DSA for composite and mldsa CAs.
func (l *Loader) loadRoot(f config.FileRootConfig) ([]*x509.Certificate, root.CAKey, error) {
	roots, err := root.ReadCertificates(f.RootCert)
	if err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootCert %w", err)
	}
	if err := root.CheckSigningCA(roots[0]); err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if err := root.CheckValidAt(roots[0], l.now()); err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootCert %s: root %w", f.RootCert, err)
	}
	signer, err := l.Keys.Signer(f.RootKey)
	if err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootKey: %w", err)
	}
	if err := root.CheckKeyMatches(roots[0], signer); err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootKey %s: %w", f.RootKey, err)
	}
	key := root.CAKey{Signer: signer}
	if err := checkRootForProfile(key, l.profile()); err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if l.profile() != profile.Catalyst {
		return roots, key, nil
	}
	alt, err := root.AltPublicKeyInfo(roots[0])
	if err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootCert %s: %w", f.RootCert, err)
	}
	if alt == nil {
		// A classical enterprise root: the PQ chain is anchored at meshca's
		// own intermediate key (see Material.PQAnchoredAtIntermediate).
		return roots, key, nil
	}
	if f.RootPQKey == "" {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootCert %s carries an ML-DSA alternative public key (2.5.29.72); set root.file.rootPQKey to its private key", f.RootCert)
	}
	if key.Alt, err = l.Keys.LoadPQ(f.RootPQKey); err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootPQKey: %w", err)
	}
	if err := root.CheckAltKeyMatches(roots[0], key.Alt); err != nil {
		return nil, root.CAKey{}, fmt.Errorf("root.file.rootPQKey %s: %w", f.RootPQKey, err)
	}
	return roots, key, nil
}

// checkRootForProfile checks that a root (or pre-issued intermediate) key
// can anchor a CA of profile p.
func checkRootForProfile(key root.CAKey, p profile.Name) error {
	got := keyName(key.Signer.Public())
	_, isPQ := key.Signer.(keys.PQSigner)
	switch p {
	case profile.Classical, profile.Catalyst:
		if isPQ {
			return fmt.Errorf("is a %s root; intermediate.profile %s needs a classical root (Envoy verifies that chain); use intermediate.profile composite or mldsa with this root", got, p)
		}
	case profile.Composite, profile.MLDSA:
		want := profile.Composite
		if strings.HasPrefix(got, "ML-DSA-") {
			want = profile.MLDSA
		} else if !isPQ {
			want = ""
		}
		if want != p {
			return fmt.Errorf("has a %s key; intermediate.profile %s needs a %s root (meshca init --profile %s creates one), because a chain that Go and Envoy cannot verify must be post-quantum from its anchor", got, p, p, p)
		}
	}
	return nil
}

// Mint creates a new intermediate for the configured profile under
// roots[0] (whose keys are rootKey), records it as a new generation,
// activates it and publishes its post-quantum trust anchor.
func (l *Loader) Mint(ctx context.Context, roots []*x509.Certificate, rootKey root.CAKey) (*Material, error) {
	m, err := l.mint(ctx, roots, rootKey)
	if err != nil {
		return nil, err
	}
	return m, l.publishPQAnchor(m)
}

func (l *Loader) mint(ctx context.Context, roots []*x509.Certificate, rootKey root.CAKey) (*Material, error) {
	ic := l.Config.Intermediate
	p := l.profile()
	now := l.now()
	name := "intermediate-" + now.UTC().Format("20060102T150405.000000000Z")
	key, ref, altRef, err := l.createCAKey(name, p)
	if err != nil {
		return nil, err
	}
	cert, err := root.Mint(roots[0], rootKey, key, root.IntermediateTemplate{
		CommonName: ic.CommonName, Organization: ic.Organization, Lifetime: ic.Lifetime.Duration,
	}, now)
	if err != nil {
		return nil, err
	}
	b := &root.Bundle{Cert: cert, Roots: roots}
	if err := b.Verify(now); err != nil {
		return nil, fmt.Errorf("freshly minted intermediate does not verify: %w", err)
	}
	if p == profile.Catalyst && rootKey.Alt != nil {
		a, err := pqc.AnchorFromCertificate(roots[0])
		if err == nil {
			err = b.VerifyPQ(a)
		}
		if err != nil {
			return nil, fmt.Errorf("freshly minted intermediate's alternative signature does not verify: %w", err)
		}
	}
	g, err := l.record(ctx, b, ref, altRef, SourceFileMinted, now)
	if err != nil {
		return nil, err
	}
	m, err := NewMaterial(g.ID, b, key, p)
	if err != nil {
		return nil, err
	}
	l.log().Info("minted intermediate", "generation", g.ID, "subject", cert.Subject.String(),
		"not_after", cert.NotAfter, "profile", string(p), "key_algorithm", keyName(key.Signer.Public()),
		"pq_algorithm", pqAlgorithmOf(key, p), "key_ref", ref, "alt_key_ref", altRef,
		"pq_anchored_at_intermediate", m.PQAnchoredAtIntermediate())
	return m, nil
}

// createCAKey creates the keys a CA of profile p holds, in the key store:
// a classical key (classical), a classical and an ML-DSA key (catalyst),
// or one composite or ML-DSA key (composite, mldsa).
func (l *Loader) createCAKey(name string, p profile.Name) (key root.CAKey, ref, altRef string, err error) {
	ic := l.Config.Intermediate
	switch p {
	case profile.Composite, profile.MLDSA:
		key.Signer, ref, err = l.Keys.CreatePQ(name, ic.PQAlgorithm)
		return key, ref, "", err
	case profile.Catalyst:
		// The ML-DSA key first: a key store that cannot hold it fails
		// before anything is created.
		if key.Alt, altRef, err = l.Keys.CreatePQ(name+"-"+strings.ToLower(ic.PQAlgorithm), ic.PQAlgorithm); err != nil {
			return key, "", "", err
		}
	}
	key.Signer, ref, err = l.Keys.Create(name, ic.KeyAlgorithm)
	return key, ref, altRef, err
}
