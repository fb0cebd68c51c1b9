package pgstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
)

// TestDurability_AcknowledgedWritesSurviveAServerCrash writes while the
// server is SIGKILLed (postmaster and backends at once: no shutdown
// checkpoint, crash recovery on restart) and checks, after the restart,
// that every write the store acknowledged is there: issuance records,
// revocations, CRL numbers (the next one is above every number handed
// out) and the active generation. A SIGKILL leaves the kernel's page cache
// in place, so this proves that an acknowledgement waits for the commit
// (and WAL replay keeps it), not the disk's flush; that is PostgreSQL's
// fsync of the WAL at commit with synchronous_commit on, which
// TestOpen_SessionsCommitSynchronouslyWhateverTheDatabaseDefault and
// TestOpen_RefusesAServerWithFsyncOff hold the store to.
func TestDurability_AcknowledgedWritesSurviveAServerCrash(t *testing.T) {
	ctx := context.Background()
	db := pg.CreateDatabase(t)
	s := openDB(t, db)
	g := add(t, s, 1)
	require.NoError(t, s.ActivateGeneration(ctx, g.ID, storetest.T0))

	// Writers run until the crash; each remembers what was acknowledged.
	var mu sync.Mutex
	var issued []string
	var revoked []store.Revocation
	var crlNumbers []uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; ; i += 3 {
				select {
				case <-stop:
					return
				default:
				}
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.PutIssuance(wctx, storetest.Issuance(i, storetest.T0))
				var rev []store.Revocation
				var n uint64
				if err == nil {
					rev, err = s.Revoke(wctx, []store.Revocation{storetest.Revocation(i, storetest.T0)})
				}
				if err == nil {
					var cut store.CRLCut
					cut, err = s.NextCRLNumber(wctx, "gen-1")
					n = cut.Number
				}
				cancel()
				mu.Lock()
				if err == nil {
					issued = append(issued, storetest.Serial(i))
					revoked = append(revoked, rev[0])
					crlNumbers = append(crlNumbers, n)
				}
				mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		})
	}
	// Crash once some writes are acknowledged.
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(issued) >= 30 }, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, pg.Kill())
	close(stop)
	wg.Wait()
	s.Close()
	require.NoError(t, pg.Restart())

	s = openDB(t, db)
	defer s.Close()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d issuances, revocations and CRL numbers acknowledged before the crash", len(issued))
	for _, serial := range issued {
		_, err := s.GetIssuance(ctx, serial)
		require.NoError(t, err, "acknowledged issuance %s lost", serial)
	}
	var maxCRL uint64
	for i, r := range revoked {
		got, err := s.GetRevocation(ctx, r.Serial)
		require.NoError(t, err, "acknowledged revocation %s lost", r.Serial)
		storetest.RequireSameRevocation(t, r, got)
		maxCRL = max(maxCRL, crlNumbers[i])
	}
	cut, err := s.NextCRLNumber(ctx, "gen-1")
	require.NoError(t, err)
	require.Greater(t, cut.Number, maxCRL, "a CRL number handed out before the crash is handed out again")
	gens, err := s.ListGenerations(ctx)
	require.NoError(t, err)
	require.Len(t, gens, 1)
	require.True(t, gens[0].Active())
}

func add(t *testing.T, s *Store, i int) store.Generation {
	t.Helper()
	g, err := s.AddGeneration(context.Background(), store.Generation{
		CertDER: []byte{byte(i)}, KeyRef: "key", Source: "file-minted", CreatedAt: storetest.T0,
	})
	require.NoError(t, err)
	return g
}
