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

	"github.com/meshca/meshca/test/syncorder"
)

// Durability is observed with strace, not by reopening the file: the page
// cache survives a close or a SIGKILL, so a store without fsync passes any
// reopen test. The helper process below acknowledges each record on stdout
// ("ack SERIAL") the moment PutIssuance returns, as a front door would; the
// trace must show the record's transaction fsynced before each ack.

const (
	syncHelperEnv   = "MESHCA_BOLTSTORE_SYNC_HELPER"
	syncHelperNoEnv = "MESHCA_BOLTSTORE_SYNC_HELPER_NOSYNC"
	syncHelperN     = 40
)

// TestPutIssuance_SyncHelper is not a test: the durability tests re-execute
// the test binary under strace to run it.
func TestPutIssuance_SyncHelper(t *testing.T) {
	path := os.Getenv(syncHelperEnv)
	if path == "" {
		return
	}
	s, err := Open(path)
	require.NoError(t, err)
	if os.Getenv(syncHelperNoEnv) == "1" {
		// The store without fsync, to prove that the check sees it.
		s.db.NoSync, s.db.NoGrowSync = true, true
	}
	var wg sync.WaitGroup
	for i := range syncHelperN {
		wg.Go(func() {
			rec := record(i, t0.Add(24*time.Hour))
			if err := s.PutIssuance(context.Background(), rec); err != nil {
				fmt.Fprintf(os.Stdout, "fail %s: %v\n", rec.Serial, err)
				return
			}
			fmt.Fprintf(os.Stdout, "ack %s\n", rec.Serial) // one write(2) on fd 1
		})
	}
	wg.Wait()
	// Exit without Close: nothing after the acks may be needed for durability.
	os.Exit(0)
}

// runSyncHelper runs the helper under strace and returns the trace, the
// store path and the helper's stdout.
func runSyncHelper(t *testing.T, noSync bool) (*syncorder.Trace, string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "meshca.db")
	s, err := Open(path) // created and closed cleanly before the traced run
	require.NoError(t, err)
	require.NoError(t, s.Close())
	traceFile := filepath.Join(dir, "strace.out")
	cmd, err := syncorder.Command(traceFile, os.Args[0], "-test.run=^TestPutIssuance_SyncHelper$", "-test.count=1")
	require.NoError(t, err, "strace must be installed (make deps)")
	cmd.Env = append(os.Environ(), syncHelperEnv+"="+path)
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

func ackOf(serial string) func(syncorder.Call) bool {
	return func(c syncorder.Call) bool {
		return c.IsWrite() && c.FD == 1 && c.Contains(`"ack `+serial+`\n"`)
	}
}

func TestPutIssuance_FsyncsEachRecordBeforeItIsAcknowledged(t *testing.T) {
	tr, path, out := runSyncHelper(t, false)
	commits := map[int]bool{} // meta-sync lines: how many group commits
	for i := range syncHelperN {
		serial := record(i, t0).Serial
		require.Contains(t, out, "ack "+serial+"\n")
		c, err := tr.DurableBeforeReply(path, syncorder.RecordMarker(serial), ackOf(serial))
		require.NoError(t, err)
		commits[c.MetaSync.Exit] = true
	}
	t.Logf("%d records acknowledged after %d fsynced commits", syncHelperN, len(commits))
}

// TestPutIssuance_SyncCheckSeesAStoreWithoutFsync proves that the check
// above can fail: with bbolt's NoSync the same run must be reported for
// every record, while a reopen would still find all of them.
func TestPutIssuance_SyncCheckSeesAStoreWithoutFsync(t *testing.T) {
	tr, path, out := runSyncHelper(t, true)
	for i := range syncHelperN {
		serial := record(i, t0).Serial
		require.Contains(t, out, "ack "+serial+"\n")
		_, err := tr.DurableBeforeReply(path, syncorder.RecordMarker(serial), ackOf(serial))
		require.ErrorContains(t, err, "but not fsynced before the acknowledgement", "serial %s", serial)
	}
	firstRec, ok := tr.First(0, func(c syncorder.Call) bool { return c.IsWrite() && c.Path == path && c.Contains(`\"serial\"`) })
	require.True(t, ok)
	require.Zero(t, tr.Count(func(c syncorder.Call) bool { return c.IsSync() && c.Path == path && c.Entry > firstRec.Entry }),
		"no fsync after the first record (Open's schema write before it is synced)")

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.Len(t, listAll(t, s), syncHelperN, "the page cache kept every record: a reopen cannot tell")
}
