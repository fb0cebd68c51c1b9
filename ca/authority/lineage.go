package authority

import (
	"crypto/x509"
	"slices"
	"sync"

	"github.com/meshca/meshca/ca/policy"
)

// ForSigner returns an Authority for a signer with its own intermediate
// (authentication.certSigners[].intermediate.separate): it signs with m
// under pol and shares everything else with a, its records, audit log,
// metrics, default profile, signature checks, CRL distribution point and
// clock, so that every signer's issuance is recorded, audited and counted
// alike. Its material moves with its own lineage's rotation (SetMaterial).
func (a *Authority) ForSigner(m *Material, pol *policy.Engine) *Authority {
	b := &Authority{policy: pol, records: a.records, audit: a.audit, metrics: a.metrics, now: a.now,
		profile: a.profile, verify: a.verify, crlURL: a.crlURL}
	b.material.Store(m)
	return b
}

// TrustUnion is the trust of client-certificate authentication when
// several intermediates sign (the default signer's and each separate
// signer's): the roots of the first Authority, which every lineage shares,
// and the intermediates of all of them, so that a workload renews with a
// certificate from any of them. The pool is rebuilt only when one of the
// authorities' pools changes (a rotation), so its identity tells the
// authenticator when to re-read (issuer/authn.ClientCert).
type TrustUnion struct {
	as []*Authority

	mu   sync.Mutex
	from []*x509.CertPool // the authorities' pools pool was built from
	pool *x509.CertPool
}

// NewTrustUnion returns the union of as; as[0] is the default signer's.
func NewTrustUnion(as ...*Authority) *TrustUnion { return &TrustUnion{as: as} }

// Roots implements the trust source of client-certificate authentication.
func (u *TrustUnion) Roots() *x509.CertPool { return u.as[0].Roots() }

// Intermediates implements the trust source of client-certificate
// authentication.
func (u *TrustUnion) Intermediates() *x509.CertPool {
	if len(u.as) == 1 {
		return u.as[0].Intermediates()
	}
	cur := make([]*x509.CertPool, len(u.as))
	for i, a := range u.as {
		cur[i] = a.Intermediates()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.pool != nil && slices.Equal(cur, u.from) {
		return u.pool
	}
	pool := x509.NewCertPool()
	for _, a := range u.as {
		b := a.Material().Bundle
		for _, c := range append([]*x509.Certificate{b.Cert}, b.Intermediates...) {
			pool.AddCert(c)
		}
	}
	u.from, u.pool = cur, pool
	return pool
}
