package boltstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
)

// ListExpiries walks the expiry index from a time on, in NotAfter order,
// across read chunks, with no transaction open while fn runs, and stops
// when fn returns false.
func TestListExpiries_FromInOrderAcrossChunks(t *testing.T) {
	chunk := scanChunk
	scanChunk = 2
	t.Cleanup(func() { scanChunk = chunk })
	s, _ := openStore(t)
	ctx := context.Background()
	for i := range 7 {
		require.NoError(t, s.PutIssuance(ctx, storetest.Issuance(i, t0.Add(time.Duration(i)*time.Hour))))
	}
	type entry struct {
		at time.Time
		id string
	}
	var got []entry
	require.NoError(t, s.ListExpiries(ctx, t0.Add(2*time.Hour), func(at time.Time, id string) bool {
		require.Zero(t, s.db.Stats().OpenTxN, "fn runs inside a read transaction")
		got = append(got, entry{at, id})
		return true
	}))
	require.Equal(t, []entry{
		{t0.Add(2 * time.Hour), "spiffe://cluster.local/ns/default/sa/sa2"},
		{t0.Add(3 * time.Hour), "spiffe://cluster.local/ns/default/sa/sa0"},
		{t0.Add(4 * time.Hour), "spiffe://cluster.local/ns/default/sa/sa1"},
		{t0.Add(5 * time.Hour), "spiffe://cluster.local/ns/default/sa/sa2"},
		{t0.Add(6 * time.Hour), "spiffe://cluster.local/ns/default/sa/sa0"},
	}, got)
	n := 0
	require.NoError(t, s.ListExpiries(ctx, t0, func(time.Time, string) bool { n++; return n < 3 }))
	require.Equal(t, 3, n)
	var _ store.ExpiryIndex = s
}
