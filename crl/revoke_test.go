package crl_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/crl"
)

const (
	appID   = "spiffe://cluster.local/ns/default/sa/app"
	otherID = "spiffe://cluster.local/ns/default/sa/other"
)

func TestRevoker_BadRequestsStoreNothing(t *testing.T) {
	p := newMgrPKI(t)
	_, is := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	r := crl.NewRevoker(p.st, p.clk, nil)
	tests := map[string]struct {
		req  crl.Request
		want string
	}{
		"nothing named":          {crl.Request{}, "name exactly one of a serial, an identity (SPIFFE ID) or a generation; got 0"},
		"serial and identity":    {crl.Request{Serial: is.Serial, Identity: appID}, "got 2"},
		"serial and generation":  {crl.Request{Serial: is.Serial, Generation: 1}, "got 2"},
		"serial not hex":         {crl.Request{Serial: "12:zz"}, `serial "12:zz" is not hexadecimal`},
		"serial over 20 octets":  {crl.Request{Serial: "01" + strings.Repeat("ff", 20)}, "at most 20 octets (RFC 5280 section 4.1.2.2)"},
		"serial very long":       {crl.Request{Serial: strings.Repeat("a", 5000)}, "is too long"},
		"serial only colons":     {crl.Request{Serial: ":::"}, "serial is empty"},
		"identity not SPIFFE":    {crl.Request{Identity: "https://cluster.local/ns/a/sa/b"}, "identity: "},
		"identity without certs": {crl.Request{Identity: otherID}, "has no unexpired certificate"},
		"unknown generation":     {crl.Request{Generation: 99}, "generation 99 does not exist"},
		"active generation":      {crl.Request{Generation: p.active}, "rotate to a new intermediate first"},
		"reason 7":               {crl.Request{Serial: is.Serial, Reason: 7}, "reason 7 is not a revocation reason"},
		"certificateHold":        {crl.Request{Serial: is.Serial, Reason: store.ReasonCertificateHold}, "reason 6 is not"},
		"removeFromCRL":          {crl.Request{Serial: is.Serial, Reason: store.ReasonRemoveFromCRL}, "reason 8 is not"},
		"reason out of range":    {crl.Request{Serial: is.Serial, Reason: 11}, "reason 11 is not"},
		"serial 0":               {crl.Request{Serial: "0"}, `serial "0" is zero: a serial number is a positive integer (RFC 5280 section 4.1.2.2)`},
		"serial 00":              {crl.Request{Serial: "00"}, `serial "00" is zero: a serial number is a positive integer`},
		"serial 00:00":           {crl.Request{Serial: "00:00"}, `serial "00:00" is zero: a serial number is a positive integer`},
		"invalidity year 0":      {crl.Request{Serial: is.Serial, InvalidityDate: time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC)}, "invalidityDate 0000-06-01T00:00:00Z is before 1950"},
		"invalidity 1949":        {crl.Request{Serial: is.Serial, InvalidityDate: time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC)}, "invalidityDate 1949-12-31T23:59:59Z is before 1950"},
		"invalidity in future":   {crl.Request{Serial: is.Serial, InvalidityDate: p.clk.Now().Add(time.Second)}, "is in the future: it is when the key was known or suspected to be compromised (RFC 5280 section 5.3.2)"},
		"invalidity year 10000":  {crl.Request{Serial: is.Serial, InvalidityDate: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "is in the future"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			recs, err := r.Revoke(context.Background(), tc.req)
			require.ErrorIs(t, err, crl.ErrInvalidRequest)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, recs)
			require.Zero(t, lastSeq(t, p.st), "nothing is stored")
		})
	}
	_, err := r.Revoke(context.Background(), crl.Request{Generation: p.active})
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
}

func TestRevoker_SerialKnownAndUnknown(t *testing.T) {
	p := newMgrPKI(t)
	_, is := p.issue(t, p.retired(), appID, p.clk.Now().Add(time.Hour))
	r := crl.NewRevoker(p.st, p.clk, nil)
	inv := p.clk.Now().Add(-time.Hour)

	// openssl's form: upper case with colons.
	raw, err := hex.DecodeString(is.Serial)
	require.NoError(t, err)
	var parts []string
	for _, b := range raw {
		parts = append(parts, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	recs, err := r.Revoke(context.Background(), crl.Request{
		Serial: strings.Join(parts, ":"), Reason: store.ReasonKeyCompromise, InvalidityDate: inv, Requester: "admin",
	})
	require.NoError(t, err)
	require.Equal(t, []store.Revocation{{
		Seq: 1, Serial: is.Serial, Kind: store.KindLeaf, Generation: p.retired(), Known: true, Identity: appID,
		NotAfter: is.NotAfter, Reason: store.ReasonKeyCompromise, RevokedAt: p.clk.Now().UTC(), InvalidityDate: inv.UTC(), Requester: "admin",
	}}, recs)

	// Unknown: recorded on the active generation, never pruned (no NotAfter).
	recs, err = r.Revoke(context.Background(), crl.Request{Serial: "00DEADBEEF", Requester: "admin"})
	require.NoError(t, err)
	require.Equal(t, []store.Revocation{{
		Seq: 2, Serial: "deadbeef", Kind: store.KindLeaf, Generation: p.active, Known: false,
		Reason: store.ReasonUnspecified, RevokedAt: p.clk.Now().UTC(), Requester: "admin",
	}}, recs)

	// Twice: the original record comes back, nothing new is stored.
	p.clk.Step(time.Minute)
	again, err := r.Revoke(context.Background(), crl.Request{Serial: is.Serial, Reason: store.ReasonSuperseded})
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, uint64(1), again[0].Seq)
	require.Equal(t, store.ReasonKeyCompromise, again[0].Reason)
	require.Equal(t, uint64(2), lastSeq(t, p.st))
}

func TestRevoker_IdentityRevokesEveryUnexpiredCertificate(t *testing.T) {
	p := newMgrPKI(t)
	now := p.clk.Now()
	_, a := p.issue(t, p.active, appID, now.Add(time.Hour))
	_, b := p.issue(t, p.retired(), appID, now.Add(2*time.Hour))
	_, expired := p.issue(t, p.active, appID, now.Add(time.Minute))
	p.issue(t, p.active, otherID, now.Add(time.Hour))
	p.clk.Step(2 * time.Minute) // expired is now past its NotAfter
	recs, err := crl.NewRevoker(p.st, p.clk, nil).Revoke(context.Background(), crl.Request{Identity: appID, Reason: store.ReasonAffiliationChanged})
	require.NoError(t, err)
	got := map[string]store.Revocation{}
	for _, r := range recs {
		got[r.Serial] = r
	}
	require.Len(t, got, 2, "the two unexpired certificates of %s, not %s (expired) nor the other identity's", appID, expired.Serial)
	for _, is := range []store.Issuance{a, b} {
		r := got[is.Serial]
		require.Equal(t, is.Generation, r.Generation)
		require.Equal(t, is.NotAfter, r.NotAfter)
		require.True(t, r.Known)
		require.Equal(t, appID, r.Identity)
		require.Equal(t, store.KindLeaf, r.Kind)
	}
}

func TestRevoker_GenerationIsTheIntermediateOnTheRootCRL(t *testing.T) {
	p := newMgrPKI(t)
	p.issue(t, p.retired(), appID, p.clk.Now().Add(time.Hour))
	recs, err := crl.NewRevoker(p.st, p.clk, nil).Revoke(context.Background(), crl.Request{Generation: p.retired(), Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	c := p.gens[p.retired()].cert
	require.Equal(t, []store.Revocation{{
		Seq: 1, Serial: hex.EncodeToString(c.SerialNumber.Bytes()), Kind: store.KindIntermediate, Generation: p.retired(), Known: true,
		NotAfter: c.NotAfter.UTC(), Reason: store.ReasonCACompromise, RevokedAt: p.clk.Now().UTC(),
	}}, recs, "one record for the intermediate; its leaves are covered by the root CRL")
}

// An invalidity date of exactly 1950 and one of now are accepted.
func TestRevoker_InvalidityDateBounds(t *testing.T) {
	p := newMgrPKI(t)
	_, a := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	_, b := p.issue(t, p.active, appID, p.clk.Now().Add(time.Hour))
	r := crl.NewRevoker(p.st, p.clk, nil)
	for _, c := range []struct {
		serial string
		inv    time.Time
	}{{a.Serial, time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)}, {b.Serial, p.clk.Now()}} {
		recs, err := r.Revoke(context.Background(), crl.Request{Serial: c.serial, InvalidityDate: c.inv})
		require.NoError(t, err)
		require.Equal(t, c.inv.UTC(), recs[0].InvalidityDate)
	}
}

// With no active generation an unknown serial would land on no CRL: it is
// refused.
func TestRevoker_UnknownSerialWithoutActiveGeneration(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	recs, err := crl.NewRevoker(st, nil, nil).Revoke(context.Background(), crl.Request{Serial: "deadbeef"})
	require.ErrorIs(t, err, crl.ErrInvalidRequest)
	require.EqualError(t, err, "invalid revocation request: serial deadbeef is not in the issuance records and there is no active CA generation whose CRL could list it; "+
		"run 'meshca init' or rotate first, or revoke it where it was issued")
	require.Nil(t, recs)
	require.Zero(t, lastSeq(t, st))
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{"4F:A3:C1": "4fa3c1", "0x": "", "00:00:01": "01", "abc": "0abc", " 7f ": "7f"} {
		got, err := crl.NormalizeSerial(in)
		if want == "" {
			require.True(t, errors.Is(err, crl.ErrInvalidRequest), in)
			continue
		}
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

// A serial that is a generation's intermediate is revoked as that
// generation (on the root CRL), with the generation's checks: the active
// one is refused.
func TestRevoker_IntermediateSerialIsItsGeneration(t *testing.T) {
	p := newMgrPKI(t)
	r := crl.NewRevoker(p.st, p.clk, nil)
	c := p.gens[p.retired()].cert
	interSerial := hex.EncodeToString(c.SerialNumber.Bytes())
	recs, err := r.Revoke(context.Background(), crl.Request{Serial: strings.ToUpper(interSerial), Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	want := []store.Revocation{{
		Seq: 1, Serial: interSerial, Kind: store.KindIntermediate, Generation: p.retired(), Known: true,
		NotAfter: c.NotAfter.UTC(), Reason: store.ReasonCACompromise, RevokedAt: p.clk.Now().UTC(),
	}}
	require.Equal(t, want, recs)
	// The same generation named by number is the same record.
	recs, err = r.Revoke(context.Background(), crl.Request{Generation: p.retired(), Reason: store.ReasonCACompromise})
	require.NoError(t, err)
	want[0].Existing = true
	require.Equal(t, want, recs)

	active := hex.EncodeToString(p.gens[p.active].cert.SerialNumber.Bytes())
	recs, err = r.Revoke(context.Background(), crl.Request{Serial: active})
	require.ErrorIs(t, err, crl.ErrInvalidRequest)
	require.ErrorIs(t, err, crl.ErrActiveGeneration)
	require.ErrorContains(t, err, fmt.Sprintf("serial %s is the intermediate certificate of generation %d", active, p.active))
	require.Nil(t, recs)
	require.Equal(t, uint64(1), lastSeq(t, p.st))
}

// An older meshca stored a generation's intermediate serial as an unknown
// leaf; revoking the generation then does not silently return that leaf
// record (the root CRL would never list the intermediate): it is refused
// with the conflict explained, and nothing changes.
func TestRevoker_GenerationWhoseSerialIsStoredAsALeaf(t *testing.T) {
	p := newMgrPKI(t)
	c := p.gens[p.retired()].cert
	interSerial := hex.EncodeToString(c.SerialNumber.Bytes())
	_, err := p.st.Revoke(context.Background(), []store.Revocation{{
		Serial: interSerial, Kind: store.KindLeaf, Generation: p.active, RevokedAt: p.clk.Now(),
	}})
	require.NoError(t, err)
	for _, req := range []crl.Request{{Generation: p.retired()}, {Serial: interSerial}} {
		recs, err := crl.NewRevoker(p.st, p.clk, nil).Revoke(context.Background(), req)
		require.ErrorIs(t, err, crl.ErrInvalidRequest)
		require.EqualError(t, err, fmt.Sprintf("invalid revocation request: the intermediate certificate of generation %d (serial %s) is already recorded as a leaf revocation (seq 1), "+
			"which an older meshca stored for a serial it did not recognise; that record lists it on a generation's CRL, where no relying party looks for an intermediate, and meshca cannot change a stored revocation, so the root CRL will not list generation %d: "+
			"stop trusting it by removing generation %d's intermediate from every trust bundle, or revoke it at the root's CA", p.retired(), interSerial, p.retired(), p.retired()))
		require.Nil(t, recs)
		require.Equal(t, uint64(1), lastSeq(t, p.st))
	}
}
