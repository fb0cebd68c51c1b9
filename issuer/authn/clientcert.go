package authn

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// TrustSource gives the current verification material; it changes on rotation.
type TrustSource interface {
	// Roots are the mesh roots; Intermediates are the CA certificates below them.
	Roots() *x509.CertPool
	Intermediates() *x509.CertPool
}

// RevocationChecker reports whether a certificate serial (lower-case hex) is revoked.
type RevocationChecker interface {
	IsRevoked(ctx context.Context, serial string) (bool, error)
}

// ClientCert authenticates a caller by a client certificate that meshca
// itself issued: it must verify to the mesh roots, be known to the issuance
// store with the same fingerprint, not be revoked, and carry exactly one
// SPIFFE URI SAN in the trust domain.
type ClientCert struct {
	Trust       TrustSource
	Records     store.Issuances
	Revocations RevocationChecker
	TrustDomain string
	Now         func() time.Time
}

// Name implements Authenticator.
func (*ClientCert) Name() string { return ClientCertificate }

// Authenticate implements Authenticator.
func (a *ClientCert) Authenticate(ctx context.Context, creds Credentials) (*Caller, error) {
	if len(creds.PeerCertificates) == 0 {
		return nil, ErrNoCredentials
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	leaf := creds.PeerCertificates[0]
	inters := a.Trust.Intermediates()
	if len(creds.PeerCertificates) > 1 {
		inters = inters.Clone()
		for _, c := range creds.PeerCertificates[1:] {
			inters.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: a.Trust.Roots(), Intermediates: inters, CurrentTime: now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fail(ClientCertificate, "untrusted_certificate", "client certificate does not verify to the mesh roots")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe" || leaf.URIs[0].Host != a.TrustDomain {
		return nil, fail(ClientCertificate, "no_identity", "client certificate carries no single SPIFFE ID of this trust domain")
	}
	serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
	if a.Records != nil {
		rec, err := a.Records.GetIssuance(ctx, serial)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fail(ClientCertificate, "unknown_certificate", "client certificate was not issued by this meshca")
		}
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(leaf.Raw)
		if rec.Fingerprint != hex.EncodeToString(sum[:]) {
			return nil, fail(ClientCertificate, "unknown_certificate", "client certificate does not match meshca's record of its serial")
		}
	}
	if a.Revocations != nil {
		revoked, err := a.Revocations.IsRevoked(ctx, serial)
		if err != nil {
			return nil, err
		}
		if revoked {
			return nil, fail(ClientCertificate, "revoked_certificate", "client certificate is revoked")
		}
	}
	return &Caller{Identity: leaf.URIs[0]}, nil
}
