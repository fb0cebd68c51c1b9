package authority

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/keys"
	"github.com/meshca/meshca/ca/pqc/composite"
	"github.com/meshca/meshca/ca/pqc/mldsa"
	"github.com/meshca/meshca/ca/profile"
	"github.com/meshca/meshca/ca/root"
)

// ReasonProfileNotSupported: the request names a leaf profile the CA's
// profile cannot issue (e.g. composite from a catalyst CA).
const ReasonProfileNotSupported = "profile_not_supported"

// leafProfile is the profile req gets: its own, else issuance.profile,
// else the CA's default.
func (a *Authority) leafProfile(req Request, m *Material) profile.Name {
	switch {
	case req.Profile != "":
		return req.Profile
	case a.profile != "":
		return a.profile
	case m != nil:
		return m.Profile.DefaultLeaf()
	}
	return profile.Default
}

// issue encodes and signs tmpl (the policy's leaf template, the same for
// every profile) as a leaf of profile leaf, in one pass with ca/certenc:
//
//   - classical, composite, mldsa: one signature by the CA key;
//   - catalyst: the ML-DSA alternative signature over the preTBSCertificate
//     (2.5.29.73/.74, non-critical), then the classical signature.
//
// The caller has checked that the CA's profile can issue leaf. The
// AuthorityKeyId is the issuer's SubjectKeyId. verify says which of the
// fresh signatures certenc checks (issuance.verifySignatures).
func (m *Material) issue(tmpl *x509.Certificate, leaf profile.Name, verify certenc.VerifyMode) ([]byte, error) {
	issuer := m.Bundle.Cert
	tmpl.AuthorityKeyId = issuer.SubjectKeyId
	t := &certenc.Template{Certificate: tmpl, Issuer: issuer.RawSubject}
	if leaf == profile.Catalyst {
		if m.AltSigner == nil {
			return nil, errors.New("catalyst leaf requested, but the CA has no ML-DSA key")
		}
		return certenc.BuildCatalyst(t, m.Signer, certenc.Catalyst{Issuer: m.AltSigner}, rand.Reader, verify)
	}
	return certenc.Build(t, m.Signer, rand.Reader, verify)
}

// checkKeyForProfile checks that key is the kind a CA of profile p holds.
func checkKeyForProfile(key root.CAKey, p profile.Name) error {
	if key.Signer == nil {
		return errors.New("CA material has no signing key")
	}
	_, isPQ := key.Signer.(keys.PQSigner)
	switch p {
	case profile.Classical, profile.Catalyst:
		if isPQ {
			return fmt.Errorf("a %s CA signs with a classical key, not %s", p, keys.PQAlgorithmOf(key.Signer.Public()))
		}
		if p == profile.Catalyst && key.Alt == nil {
			return errors.New("a catalyst CA needs an ML-DSA key for the alternative signatures")
		}
		if p == profile.Catalyst {
			if _, ok := key.Alt.Public().(*mldsa.PublicKey); !ok {
				return fmt.Errorf("a catalyst CA's alternative key must be ML-DSA, not %T", key.Alt.Public())
			}
		}
	case profile.Composite:
		if _, ok := key.Signer.Public().(*composite.PublicKey); !ok {
			return fmt.Errorf("a composite CA signs with a composite ML-DSA key, not %s", keyName(key.Signer.Public()))
		}
	case profile.MLDSA:
		if _, ok := key.Signer.Public().(*mldsa.PublicKey); !ok {
			return fmt.Errorf("an mldsa CA signs with an ML-DSA key, not %s", keyName(key.Signer.Public()))
		}
	default:
		return fmt.Errorf("unknown CA profile %q", p)
	}
	return nil
}

// keyName names a public key for errors: a PQ algorithm or a classical
// key algorithm.
func keyName(pub any) string { return root.KeyName(pub) }
