package authority

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshca/meshca/ca/caerr"
	"github.com/meshca/meshca/ca/certenc"
	"github.com/meshca/meshca/ca/policy"
	"github.com/meshca/meshca/ca/store"
)

// ProfileServing marks meshca's own TLS serving certificates in the records
// (they are issued with the CA's default leaf profile).
const ProfileServing = "serving"

// Serving is a TLS serving certificate for one of meshca's own endpoints.
type Serving struct {
	Leaf       *x509.Certificate
	Chain      []*x509.Certificate // leaf, then the intermediates up to (not including) the root
	Generation uint64
}

// IssueServing signs a serving certificate for pub with the given DNS and IP
// SANs from the active intermediate, records it and audits it. It bypasses
// the workload policy: the names come from meshca's own configuration.
func (a *Authority) IssueServing(ctx context.Context, pub crypto.PublicKey, dnsNames []string, ips []net.IP, ttl time.Duration) (*Serving, error) {
	return a.issueServing(ctx, pub, nil, dnsNames, ips, ttl)
}

// IssueServingSVID is IssueServing for an endpoint that presents an
// X.509-SVID (SPIFFE X509-SVID specification): the certificate also
// carries id as its one URI SAN, and is recorded under id. meshca's SPIFFE
// bundle endpoint serves with one in the https_spiffe profile (SPIFFE
// Federation specification, section 5.2.2). The configuration checks
// that id is of the mesh's trust domain.
func (a *Authority) IssueServingSVID(ctx context.Context, pub crypto.PublicKey, id spiffeid.ID, dnsNames []string, ttl time.Duration) (*Serving, error) {
	if id.IsZero() {
		return nil, caerr.New(caerr.InvalidArgument, "bad_identity", "the serving SVID has no SPIFFE ID")
	}
	return a.issueServing(ctx, pub, id.URL(), dnsNames, nil, ttl)
}

// issueServing signs a serving certificate; uri, when set, is its SPIFFE ID.
func (a *Authority) issueServing(ctx context.Context, pub crypto.PublicKey, uri *url.URL, dnsNames []string, ips []net.IP, ttl time.Duration) (*Serving, error) {
	m := a.material.Load()
	if m == nil {
		return nil, caerr.New(caerr.Unavailable, "ca_not_ready", "the CA has no signing material yet")
	}
	serial, err := policy.RandomSerial()
	if err != nil {
		return nil, err
	}
	now := a.now()
	issuer := m.Bundle.Cert
	if !now.Before(issuer.NotAfter) {
		return nil, caerr.New(caerr.Unavailable, policy.ReasonIssuerExpired, "the signing intermediate has expired")
	}
	notAfter := now.Add(ttl).Truncate(time.Second)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-policy.Backdate).Truncate(time.Second),
		NotAfter:              notAfter,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		URIs:                  uris(uri),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	// The CA's own profile: a catalyst CA's serving certificates carry the
	// ML-DSA alternative signature too.
	tmpl.PublicKey = pub
	if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
		return nil, caerr.Wrap(err, caerr.Internal, "sign_failed", "serving certificate key")
	}
	der, err := m.issue(tmpl, m.Profile.DefaultLeaf(), a.verify)
	if err != nil {
		return nil, caerr.Wrap(err, caerr.Internal, "sign_failed", "sign serving certificate")
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	name := "serving"
	switch {
	case uri != nil:
		name = uri.String()
	case len(dnsNames) > 0:
		name = "dns:" + dnsNames[0]
	}
	rec := store.Issuance{
		Serial: hex.EncodeToString(leaf.SerialNumber.Bytes()), Identity: name,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Fingerprint: hex.EncodeToString(sum[:]),
		Profile: ProfileServing, Requester: "meshca", Generation: m.Generation, IssuedAt: now.UTC(),
	}
	if err := a.records.PutIssuance(ctx, rec); err != nil {
		return nil, caerr.Wrap(err, caerr.Unavailable, "store_unavailable", "record serving certificate")
	}
	a.audit.Issued(ctx, auditServing(rec))
	chain := append([]*x509.Certificate{leaf, issuer}, m.Bundle.Intermediates...)
	return &Serving{Leaf: leaf, Chain: chain, Generation: m.Generation}, nil
}

func uris(u *url.URL) []*url.URL {
	if u == nil {
		return nil
	}
	return []*url.URL{u}
}

// subjectKeyID is the RFC 7093 key identifier of pub (as certenc computes it).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return certenc.SubjectKeyID(spki)
}
