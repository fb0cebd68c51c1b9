package crl_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/crl"
)

// One scope whose CRL cannot be built does not stop the others nor
// serve's start: Start serves what builds, counts the failure by scope,
// and the loop keeps retrying it.
func TestManager_OneScopeFailingDoesNotStopTheOthers(t *testing.T) {
	p := newMgrPKI(t)
	e := newManager(t, p, func(o *crl.Options) {
		// The retired generation's CRL is signed with a key that is not
		// its certificate's: Build refuses it every time.
		o.Issuers[1].Signer = crl.Signer{Key: p.gens[p.active].key}
	})
	var scopes []string
	for _, c := range e.m.CRLs() {
		if !c.Delta {
			scopes = append(scopes, c.Scope)
		}
	}
	require.Equal(t, []string{crl.ScopeGeneration(p.active), crl.ScopeRoot}, scopes)
	bad := map[string]string{"scope": crl.ScopeGeneration(p.retired())}
	require.Equal(t, 1.0, metricValue(t, e.reg, "meshca_crl_build_errors_total", bad))
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_build_errors_total", map[string]string{"scope": crl.ScopeRoot}))
	e.run(t)
	// The retry's timer exists before the step: run returns once the
	// republish timer does, and a step before the retry timer is set
	// passes it by (it did on a loaded CI machine).
	require.Eventually(t, func() bool { return e.clk.Waiters() > e.timers }, 5*time.Second, time.Millisecond, "the retry timer")
	p.clk.Step(2 * time.Second) // the retry
	require.Eventually(t, func() bool {
		return metricValue(t, e.reg, "meshca_crl_build_errors_total", bad) == 2
	}, 5*time.Second, time.Millisecond)
}

// badRecords lists, after the store's records, revocations a store written
// by an older build could hold: a CRL cannot encode their dates.
type badRecords struct {
	crl.Backend
	recs []store.Revocation
}

func (b badRecords) ListRevocations(ctx context.Context, since uint64, fn func(store.Revocation) bool) error {
	stop := false
	err := b.Backend.ListRevocations(ctx, since, func(r store.Revocation) bool {
		if !fn(r) {
			stop = true
			return false
		}
		return true
	})
	if err != nil || stop {
		return err
	}
	for _, r := range b.recs {
		if r.Seq > since && !fn(r) {
			return nil
		}
	}
	return nil
}

// NextCRLNumber's cut covers the added records too: their Seqs follow the
// store's.
func (b badRecords) NextCRLNumber(ctx context.Context, scope string) (store.CRLCut, error) {
	cut, err := b.Backend.NextCRLNumber(ctx, scope)
	for _, r := range b.recs {
		cut.Seq = max(cut.Seq, r.Seq)
	}
	return cut, err
}

// A stored record the CRL cannot encode does not stop the CRL: a bad
// invalidity date is left off its entry (the revocation is still listed),
// a bad revocation date skips the entry; both are counted and logged.
func TestManager_UnencodableRecordIsReportedNotFatal(t *testing.T) {
	p := newMgrPKI(t)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, err := crl.NewRevoker(p.st, p.clk, nil).Revoke(context.Background(), crl.Request{Serial: is.Serial})
	require.NoError(t, err)
	year0 := time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC)
	st := badRecords{Backend: p.st, recs: []store.Revocation{
		{Seq: 100, Serial: "0a0a", Kind: store.KindLeaf, Generation: p.active, RevokedAt: p.clk.Now(), InvalidityDate: year0, Reason: store.ReasonKeyCompromise},
		{Seq: 101, Serial: "0b0b", Kind: store.KindLeaf, Generation: p.active, RevokedAt: year0},
	}}
	e := newManager(t, p, func(o *crl.Options) { o.Store = st })
	_, fl := e.crl(t, crl.ScopeGeneration(p.active), false)
	require.Equal(t, []string{is.Serial, "0a0a"}, serialsOf(fl))
	require.True(t, fl.RevokedCertificateEntries[1].ReasonCode == int(store.ReasonKeyCompromise))
	require.Len(t, fl.RevokedCertificateEntries[1].Extensions, 1, "reasonCode only, no invalidityDate")
	gen := map[string]string{"scope": crl.ScopeGeneration(p.active)}
	require.Equal(t, 2.0, metricValue(t, e.reg, "meshca_crl_unencodable_records_total", gen), "one per record, for the full CRL")
	require.Equal(t, 0.0, metricValue(t, e.reg, "meshca_crl_build_errors_total", gen))
}
