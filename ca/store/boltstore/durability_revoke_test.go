package boltstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/storetest"
	"github.com/meshca/meshca/test/syncorder"
)

// The proof of durability.go for PutIssuance, for the other acknowledged
// writes: a revocation (RFC 5280 section 5.3 entries must not be lost once
// the admin is told "revoked") and a CRL number (a number handed out and
// then lost would be handed out again after a crash, RFC 5280 section
// 5.2.3). The helper acknowledges each on stdout the moment the call
// returns; the strace trace must show its transaction fsynced before.

const (
	revokeSyncHelperEnv = "MESHCA_BOLTSTORE_REVOKE_SYNC_HELPER"
	revokeSyncHelperN   = 12
)

// revokeSyncSerial and crlSyncScope are unique in the helper's writes, so
// the first write of the store holding one is its own transaction.
func revokeSyncSerial(i int) string { return fmt.Sprintf("5a%030x", i+1) }
func crlSyncScope(i int) string     { return fmt.Sprintf("durability-scope-%02d", i) }

// TestRevoke_SyncHelper is not a test: the durability tests re-execute the
// test binary under strace to run it.
func TestRevoke_SyncHelper(t *testing.T) {
	path := os.Getenv(revokeSyncHelperEnv)
	if path == "" {
		return
	}
	s, err := Open(path)
	require.NoError(t, err)
	if os.Getenv(syncHelperNoEnv) == "1" {
		s.db.NoSync, s.db.NoGrowSync = true, true // proves that the check sees it
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range revokeSyncHelperN {
		wg.Go(func() {
			r := storetest.Revocation(i, t0.Add(24*time.Hour))
			r.Serial = revokeSyncSerial(i)
			if _, err := s.Revoke(ctx, []store.Revocation{r}); err != nil {
				fmt.Fprintf(os.Stdout, "fail %s: %v\n", r.Serial, err)
				return
			}
			fmt.Fprintf(os.Stdout, "ack revoke %s\n", r.Serial) // one write(2) on fd 1
		})
		wg.Go(func() {
			cut, err := s.NextCRLNumber(ctx, crlSyncScope(i))
			if err != nil {
				fmt.Fprintf(os.Stdout, "fail %s: %v\n", crlSyncScope(i), err)
				return
			}
			fmt.Fprintf(os.Stdout, "ack crl %s %d\n", crlSyncScope(i), cut.Number)
		})
	}
	wg.Wait()
	os.Exit(0) // without Close: nothing after the acks may be needed
}

func runRevokeSyncHelper(t *testing.T, noSync bool) (*syncorder.Trace, string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "meshca.db")
	s, err := Open(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	traceFile := filepath.Join(dir, "strace.out")
	cmd, err := syncorder.Command(traceFile, os.Args[0], "-test.run=^TestRevoke_SyncHelper$", "-test.count=1")
	require.NoError(t, err, "strace must be installed (make deps)")
	cmd.Env = append(os.Environ(), revokeSyncHelperEnv+"="+path)
	if noSync {
		cmd.Env = append(cmd.Env, syncHelperNoEnv+"=1")
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), out.String())
	tr, err := syncorder.ParseFile(traceFile)
	require.NoError(t, err)
	return tr, path, out.String()
}

func ackWith(text string) func(syncorder.Call) bool {
	return func(c syncorder.Call) bool { return c.IsWrite() && c.FD == 1 && c.Contains(`"`+text) }
}

// checkRevokeSync checks every acknowledgement of the helper and returns
// the first error of each kind.
func checkRevokeSync(t *testing.T, tr *syncorder.Trace, path, out string) (revokeErrs, crlErrs []error) {
	t.Helper()
	for i := range revokeSyncHelperN {
		serial := revokeSyncSerial(i)
		require.Contains(t, out, "ack revoke "+serial+"\n")
		_, err := tr.DurableBeforeReply(path, syncorder.RecordMarker(serial), ackWith("ack revoke "+serial+`\n"`))
		revokeErrs = append(revokeErrs, err)

		scope := crlSyncScope(i)
		require.Contains(t, out, "ack crl "+scope+" 1\n", "each scope starts at 1")
		_, err = tr.DurableBeforeReply(path, scope, ackWith("ack crl "+scope+" "))
		crlErrs = append(crlErrs, err)
	}
	return revokeErrs, crlErrs
}

func TestRevokeAndNextCRLNumber_FsyncBeforeTheyAreAcknowledged(t *testing.T) {
	tr, path, out := runRevokeSyncHelper(t, false)
	revokeErrs, crlErrs := checkRevokeSync(t, tr, path, out)
	for i := range revokeSyncHelperN {
		require.NoError(t, revokeErrs[i], "revocation %s", revokeSyncSerial(i))
		require.NoError(t, crlErrs[i], "CRL number of %s", crlSyncScope(i))
	}
}

// TestRevokeAndNextCRLNumber_SyncCheckSeesAStoreWithoutFsync proves that
// the check above can fail: without fsync every acknowledgement is reported.
func TestRevokeAndNextCRLNumber_SyncCheckSeesAStoreWithoutFsync(t *testing.T) {
	tr, path, out := runRevokeSyncHelper(t, true)
	revokeErrs, crlErrs := checkRevokeSync(t, tr, path, out)
	for i := range revokeSyncHelperN {
		require.ErrorContains(t, revokeErrs[i], "but not fsynced before the acknowledgement", "revocation %s", revokeSyncSerial(i))
		require.ErrorContains(t, crlErrs[i], "but not fsynced before the acknowledgement", "CRL number of %s", crlSyncScope(i))
	}
}

const failedRevokeSyncHelperEnv = "MESHCA_BOLTSTORE_FAILED_REVOKE_SYNC_HELPER"

// TestRevoke_FailedSyncHelper is not a test: it runs under strace, which
// fails one fdatasync with EIO (see TestPutIssuance_FailedSyncHelper): 1-2
// are Open's, 3-4 the first revocation's, 5-6 the second's.
func TestRevoke_FailedSyncHelper(t *testing.T) {
	path := os.Getenv(failedRevokeSyncHelperEnv)
	if path == "" {
		return
	}
	s := openOnOneThread(t, path)
	ctx := context.Background()
	for i := range 3 {
		r := storetest.Revocation(i, t0.Add(24*time.Hour))
		got, err := s.Revoke(ctx, []store.Revocation{r})
		seq := uint64(0)
		if err == nil {
			seq = got[0].Seq
		}
		fmt.Fprintf(os.Stdout, "revoke %d: seq %d: %v\n", i, seq, err)
	}
	_, err := s.GetRevocation(ctx, storetest.Revocation(1, t0).Serial)
	fmt.Fprintf(os.Stdout, "get 1: %v\n", err)
	cut, err := s.NextCRLNumber(ctx, "gen-1")
	fmt.Fprintf(os.Stdout, "crl number: %d: %v\n", cut.Number, err)
	fmt.Fprintf(os.Stdout, "healthy: %v\n", s.Healthy())
	os.Exit(0)
}

func runFailedRevokeSyncHelper(t *testing.T, when int) string {
	t.Helper()
	_, out, err := runUnderFault(t, "TestRevoke_FailedSyncHelper", failedRevokeSyncHelperEnv, faultAt{"fdatasync", when}, "EIO")
	require.NoError(t, err, out)
	return out
}

// A revocation whose meta page sync failed is not acknowledged, and the
// store then acknowledges nothing more (failClosedWriter), revocations and
// CRL numbers included.
func TestRevoke_NothingIsAcknowledgedAfterAFailedMetaSync(t *testing.T) {
	out := runFailedRevokeSyncHelper(t, 6)
	failed := errStoreFailed.Error() + ": input/output error; check the disk and restart meshca"
	require.Contains(t, out, "revoke 0: seq 1: <nil>\n")
	require.Contains(t, out, "revoke 1: seq 0: input/output error\n")
	require.Contains(t, out, "revoke 2: seq 0: "+failed+"\n")
	require.Contains(t, out, "crl number: 0: "+failed+"\n")
	require.Contains(t, out, "healthy: "+failed+"\n")
}

// A failed data sync rolls its transaction back: only that revocation
// fails, and its Seq is not lost to the next one (it was never given out).
func TestRevoke_AFailedDataSyncFailsOnlyItsOwnCommit(t *testing.T) {
	out := runFailedRevokeSyncHelper(t, 5)
	require.Contains(t, out, "revoke 0: seq 1: <nil>\n")
	require.Contains(t, out, "revoke 1: seq 0: input/output error\n")
	require.Contains(t, out, "revoke 2: seq 2: <nil>\n")
	require.Contains(t, out, "get 1: "+store.ErrNotFound.Error()+"\n")
	require.Contains(t, out, "crl number: 1: <nil>\n")
	require.Contains(t, out, "healthy: <nil>\n")
}
