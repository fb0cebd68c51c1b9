package root

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca/store"
)

// CRLMemory keeps the root CRL a source took last, per issuer, in meshca's
// store (store.RootCRLs), beside the one the source holds in memory: a
// restarted meshca, or another replica on a shared store, compares what
// the source serves with it, so that it never takes a CRL with a lower
// CRLNumber than one taken before (a replayed or rolled-back copy, RFC
// 5280 section 5.2.3), and has the last CRL taken to publish while the
// source cannot be read. A nil *CRLMemory keeps nothing.
type CRLMemory struct {
	store store.RootCRLs
}

// NewCRLMemory is the CRLMemory of st, or nil when st does not keep root
// CRLs.
func NewCRLMemory(st any) *CRLMemory {
	if rc, ok := st.(store.RootCRLs); ok {
		return &CRLMemory{store: rc}
	}
	return nil
}

// crlMemoryKey names issuer in the store: its name and public key, so that
// a re-keyed issuer, whose CRL numbers start afresh, has its own record.
func crlMemoryKey(issuer *x509.Certificate) string {
	h := sha256.New()
	h.Write(issuer.RawSubject)
	h.Write(issuer.RawSubjectPublicKeyInfo)
	return "crl-issuer-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Recall returns the CRL kept for issuer when CheckRootCRL takes it in
// place of held, the CRL the source holds (nil for none), at now: it has a
// greater number, nothing is held, or it renumbers an expired one held
// (another replica took it). Otherwise, and when none is kept, it returns
// nil. The source holds it, expired or not, as it did before a restart;
// a kept CRL that CheckRootCRL refuses (another issuer's, or one that no
// longer passes) is ignored.
func (m *CRLMemory) Recall(ctx context.Context, issuer *x509.Certificate, held *x509.RevocationList, now time.Time) (*x509.RevocationList, error) {
	if m == nil {
		return nil, nil
	}
	der, err := m.store.GetRootCRL(ctx, crlMemoryKey(issuer))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case held != nil && bytes.Equal(der, held.Raw):
		return nil, nil
	}
	if k, v := checkKept(der, held, issuer, now); v.Takes() {
		return k, nil
	}
	return nil, nil
}

// Keep stores c, a CRL of issuer that CheckRootCRL took (verdict v) in
// place of held, unless a greater-numbered one is kept (another replica
// took it meanwhile): then that one is returned, to be held instead of c,
// if CheckRootCRL takes it in c's place and it is valid now. Otherwise it
// returns c. A TakeRenumbered c replaces a kept CRL of held's number only.
func (m *CRLMemory) Keep(ctx context.Context, issuer *x509.Certificate, c, held *x509.RevocationList, v RootCRLVerdict, now time.Time) (*x509.RevocationList, error) {
	if m == nil {
		return c, nil
	}
	rc := store.RootCRL{Number: c.Number, DER: c.Raw}
	if v == TakeRenumbered {
		rc.Replaces = held.Number
	}
	der, err := m.store.KeepRootCRL(ctx, crlMemoryKey(issuer), rc)
	if err != nil {
		return c, fmt.Errorf("keeping the root CRL of %s in the store: %w", issuer.Subject, err)
	}
	if bytes.Equal(der, c.Raw) {
		return c, nil
	}
	if k, v := checkKept(der, c, issuer, now); v == TakeCRL {
		return k, nil
	}
	return c, fmt.Errorf("the store keeps another CRL of %s that does not replace this one now (CRL number %s is not kept: a restart compares with the one kept)", issuer.Subject, c.Number)
}

// checkKept parses der, a CRL kept in the store, and returns it with
// CheckRootCRL's verdict against held; a CRL that does not parse or that
// CheckRootCRL refuses gets KeepOlderNumber, a verdict that takes nothing.
func checkKept(der []byte, held *x509.RevocationList, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, RootCRLVerdict) {
	k, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, KeepOlderNumber
	}
	v, err := CheckRootCRL(k, held, issuer, now)
	if err != nil {
		return nil, KeepOlderNumber
	}
	return k, v
}
