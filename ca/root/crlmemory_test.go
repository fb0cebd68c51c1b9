package root_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/root"
	"github.com/meshca/meshca/ca/store/boltstore"
)

// The CRL memory on a real bbolt store: what Recall and Keep return for
// each state of the store.
func TestCRLMemory_RecallAndKeep(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mem := root.NewCRLMemory(st)
	require.NotNil(t, mem)
	require.Nil(t, root.NewCRLMemory(struct{}{}), "a store that keeps no root CRLs")
	var none *root.CRLMemory
	k, err := none.Recall(ctx, nil, nil, now)
	require.NoError(t, err)
	require.Nil(t, k, "a nil memory recalls nothing")

	r := newRoot(t, "Kept Root", 24*time.Hour)
	other := newRoot(t, "Other Root", 24*time.Hour)
	valid := func(from, to time.Duration) func(*x509.RevocationList) {
		return func(l *x509.RevocationList) { l.ThisUpdate, l.NextUpdate = now.Add(from), now.Add(to) }
	}
	usable, expired := valid(-time.Hour, time.Hour), valid(-2*time.Hour, -time.Hour)
	recall := func(issuer ca, held *x509.RevocationList) *x509.RevocationList {
		t.Helper()
		k, err := mem.Recall(ctx, issuer.cert, held, now)
		require.NoError(t, err)
		return k
	}
	keep := func(c *x509.RevocationList, v root.RootCRLVerdict, held ...*x509.RevocationList) (*x509.RevocationList, error) {
		t.Helper()
		var h *x509.RevocationList
		if len(held) > 0 {
			h = held[0]
		}
		return mem.Keep(ctx, r.cert, c, h, v, now)
	}

	k = recall(r, nil)
	require.Nil(t, k, "nothing kept")
	c5 := crlOf(t, r, 5, usable)
	got, err := keep(c5, root.TakeCRL)
	require.NoError(t, err)
	require.Same(t, c5, got)
	k = recall(r, nil)
	require.Equal(t, c5.Raw, k.Raw, "after a restart")
	k = recall(r, c5)
	require.Nil(t, k, "the one held")
	k = recall(r, crlOf(t, r, 6, usable))
	require.Nil(t, k, "older than the one held")
	k = recall(other, nil)
	require.Nil(t, k, "another issuer has its own record")

	// Another replica kept 7 while this one took 6: 7 is held instead.
	c7 := crlOf(t, r, 7, usable)
	_, err = root.NewCRLMemory(st).Keep(ctx, r.cert, c7, nil, root.TakeCRL, now)
	require.NoError(t, err)
	got, err = keep(crlOf(t, r, 6, usable), root.TakeCRL)
	require.NoError(t, err)
	require.Equal(t, c7.Raw, got.Raw)

	// A greater one kept that has expired: recalled, to be held as before
	// a restart; a CRL it does not replace is returned with an error.
	c9 := crlOf(t, r, 9, valid(-50*time.Minute, -10*time.Minute))
	_, err = keep(c9, root.TakeStaleCRL)
	require.NoError(t, err)
	k = recall(r, c7)
	require.Equal(t, c9.Raw, k.Raw)
	c8 := crlOf(t, r, 8, usable)
	got, err = keep(c8, root.TakeCRL)
	require.ErrorContains(t, err, "the store keeps another CRL of CN=Kept Root")
	require.Same(t, c8, got)
	// The issuer's numbering went back: a renumbered CRL replaces the
	// expired one it was compared with, not another.
	c2 := crlOf(t, r, 2, valid(-5*time.Minute, time.Hour)) // issued after CRL 9
	got, err = keep(c2, root.TakeRenumbered, crlOf(t, r, 8, expired))
	require.ErrorContains(t, err, "the store keeps another CRL of CN=Kept Root")
	require.Same(t, c2, got)
	got, err = keep(c2, root.TakeRenumbered, c9)
	require.NoError(t, err)
	require.Same(t, c2, got)
	k = recall(r, nil)
	require.Equal(t, c2.Raw, k.Raw)
	// A replica that still holds the expired CRL 9 recalls CRL 2 (issued
	// after it) instead.
	k = recall(r, c9)
	require.Equal(t, c2.Raw, k.Raw)
}
