package boltstore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
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
	// bufferedJournalEnv makes a helper write the journal without direct
	// I/O (pwrite and fdatasync), as on a file system without O_DIRECT.
	bufferedJournalEnv = "MESHCA_BOLTSTORE_BUFFERED_JOURNAL"
)

// journalModes are the two ways the journal is written: "direct" (O_DIRECT,
// pwritev2 with RWF_DSYNC), where the test's file system allows it, and
// "buffered" (pwrite, fdatasync).
var journalModes = []string{"direct", "buffered"}

// setJournalMode applies bufferedJournalEnv in a helper process.
func setJournalMode() {
	if os.Getenv(bufferedJournalEnv) == "1" {
		journalDirectIO = false
	}
}

// journalModeEnv is the environment that runs a helper in mode.
func journalModeEnv(mode string) string {
	if mode == "buffered" {
		return bufferedJournalEnv + "=1"
	}
	return bufferedJournalEnv + "=0"
}

// TestPutIssuance_SyncHelper is not a test: the durability tests re-execute
// the test binary under strace to run it.
func TestPutIssuance_SyncHelper(t *testing.T) {
	path := os.Getenv(syncHelperEnv)
	if path == "" {
		return
	}
	setJournalMode()
	s, err := Open(path)
	require.NoError(t, err)
	if os.Getenv(syncHelperNoEnv) == "1" {
		// The store without fsync, to prove that the check sees it.
		s.db.NoSync, s.db.NoGrowSync = true, true
		s.writes.j.noSync = true
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
func runSyncHelper(t *testing.T, noSync bool, mode string) (*syncorder.Trace, string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "meshca.db")
	s, err := Open(path) // created and closed cleanly before the traced run
	require.NoError(t, err)
	require.NoError(t, s.Close())
	traceFile := filepath.Join(dir, "strace.out")
	cmd, err := syncorder.Command(traceFile, os.Args[0], "-test.run=^TestPutIssuance_SyncHelper$", "-test.count=1")
	require.NoError(t, err, "strace must be installed (make deps)")
	cmd.Env = append(os.Environ(), syncHelperEnv+"="+path, journalModeEnv(mode))
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
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			tr, path, out := runSyncHelper(t, false, mode)
			commits := map[int]bool{} // journal syncs: how many group commits
			for i := range syncHelperN {
				serial := record(i, t0).Serial
				require.Contains(t, out, "ack "+serial+"\n")
				c, err := tr.DurableBeforeReply(path, syncorder.RecordMarker(serial), ackOf(serial))
				require.NoError(t, err)
				require.True(t, c.Journal, "the record is acknowledged from the journal, with one sync")
				if mode == "direct" {
					require.True(t, c.Durable.IsDSyncWrite(), "the write is the sync: %s", c.Durable.Name)
				} else {
					require.Equal(t, "fdatasync", c.Durable.Name)
				}
				commits[c.Durable.Exit] = true
			}
			t.Logf("%d records acknowledged after %d journal syncs", syncHelperN, len(commits))
		})
	}
}

// TestPutIssuance_SyncCheckSeesAStoreWithoutFsync proves that the check
// above can fail: with bbolt's NoSync the same run must be reported for
// every record, while a reopen would still find all of them.
func TestPutIssuance_SyncCheckSeesAStoreWithoutFsync(t *testing.T) {
	tr, path, out := runSyncHelper(t, true, "direct")
	for i := range syncHelperN {
		serial := record(i, t0).Serial
		require.Contains(t, out, "ack "+serial+"\n")
		_, err := tr.DurableBeforeReply(path, syncorder.RecordMarker(serial), ackOf(serial))
		require.ErrorContains(t, err, "but not fsynced before the acknowledgement", "serial %s", serial)
	}
	journal := syncorder.JournalPath(path)
	firstRec, ok := tr.First(0, func(c syncorder.Call) bool { return c.IsWrite() && c.Path == journal && c.Contains(`\"serial\"`) })
	require.True(t, ok)
	require.Zero(t, tr.Count(func(c syncorder.Call) bool {
		return (c.IsSync() || c.IsDSyncWrite()) && (c.Path == path || c.Path == journal) && c.Entry > firstRec.Entry
	}), "no fsync after the first record (Open's schema write before it is synced)")

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.Len(t, listAll(t, s), syncHelperN, "the page cache kept every record: a reopen cannot tell")
}

const failedSyncHelperEnv = "MESHCA_BOLTSTORE_FAILED_SYNC_HELPER"

// TestPutIssuance_FailedSyncHelper is not a test: it runs under strace,
// which fails one sync with EIO. The fdatasyncs of its OS thread: 1-2 are
// Open's schema commit; with a buffered journal 3 is the journal sync of
// the first record, 4 the second's, 5-6 the checkpoint that ListIssuances
// asks for (bbolt's data pages, then its meta page), 7 the journal sync of
// the third record; with direct I/O 3-4 are the checkpoint's, and the
// journal's syncs are its pwritev2 calls with RWF_DSYNC: 1 Open's first
// (of the journal's first block, unchanged), 2 the first record's, 3 the
// second's, 4 the third's.
func TestPutIssuance_FailedSyncHelper(t *testing.T) {
	path := os.Getenv(failedSyncHelperEnv)
	if path == "" {
		return
	}
	setJournalMode()
	checkpointAfter = time.Hour // only ListIssuances checkpoints
	s := openOnOneThread(t, path)
	fmt.Fprintf(os.Stdout, "journal: %s\n", journalModeOf(s))
	ctx := context.Background()
	for i := range 2 {
		fmt.Fprintf(os.Stdout, "put %d: %v\n", i, s.PutIssuance(ctx, record(i, t0.Add(24*time.Hour))))
	}
	fmt.Fprintf(os.Stdout, "checkpoint: %v\n", s.ListIssuances(ctx, func(store.Issuance) bool { return true }))
	fmt.Fprintf(os.Stdout, "put 2: %v\n", s.PutIssuance(ctx, record(2, t0.Add(24*time.Hour))))
	_, err := s.GetIssuance(ctx, record(1, t0).Serial)
	fmt.Fprintf(os.Stdout, "get 1: %v\n", err)
	_, err = s.AddGeneration(ctx, store.Generation{Source: "file-minted"})
	fmt.Fprintf(os.Stdout, "add generation: %v\n", err)
	fmt.Fprintf(os.Stdout, "healthy: %v\n", s.Healthy())
	os.Exit(0)
}

// failedSyncs are the syncs a fault is injected into, by journal mode
// (see TestPutIssuance_FailedSyncHelper): the journal's sync of the second
// record, the checkpoint's data pages and its meta page.
var failedSyncs = map[string]struct{ journal, data, meta faultAt }{
	"direct":   {journal: faultAt{"pwritev2", 3}, data: faultAt{"fdatasync", 3}, meta: faultAt{"fdatasync", 4}},
	"buffered": {journal: faultAt{"fdatasync", 4}, data: faultAt{"fdatasync", 5}, meta: faultAt{"fdatasync", 6}},
}

// faultAt is the when-th call of syscall on the helper's thread.
type faultAt struct {
	syscall string
	when    int
}

// A failed sync of the journal leaves its tail on disk unknown (Linux may
// drop the dirty pages after a failed writeback, fsync(2) ERRORS; a failed
// direct write leaves its blocks unknown): a later frame after it might
// never be replayed, so the store accepts no record after it. The records
// acknowledged before it are synced, and the next checkpoint still applies
// them to bbolt; bbolt's own writes go on.
func TestPutIssuance_NothingIsAcknowledgedAfterAFailedJournalSync(t *testing.T) {
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			path, out := runFailedSyncHelper(t, mode, failedSyncs[mode].journal)
			cause := "input/output error"
			if mode == "direct" {
				cause = "write " + path + journalSuffix + ": " + cause
			}
			failed := errJournalFailed.Error() + ": " + cause + "; check the disk and restart meshca\n"
			require.Contains(t, out, "put 0: <nil>\n")
			require.Contains(t, out, "put 1: "+cause+"\n")
			require.Contains(t, out, "checkpoint: <nil>\n")
			require.Contains(t, out, "put 2: "+failed)
			require.Contains(t, out, "get 1: "+store.ErrNotFound.Error()+"\n")
			require.Contains(t, out, "add generation: <nil>\n")
			require.Contains(t, out, "healthy: "+failed, "readiness must report the failed store")
			s, err := Open(path)
			require.NoError(t, err)
			defer s.Close()
			_, err = s.GetIssuance(context.Background(), record(0, t0).Serial)
			require.NoError(t, err, "the record acknowledged before the failure is in bbolt")
		})
	}
}

// bbolt writes the meta page and then fdatasyncs it; when that sync fails
// the transaction is reported failed but is already the current one in
// memory (the meta page is read through the mmap): later commits build on
// pages whose content on disk is unknown, since Linux may drop dirty pages
// after a failed writeback. A checkpoint whose meta sync fails must
// therefore stop the store: no record is acknowledged after it.
func TestPutIssuance_NothingIsAcknowledgedAfterAFailedCheckpointMetaSync(t *testing.T) {
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			_, out := runFailedSyncHelper(t, mode, failedSyncs[mode].meta)
			failed := errStoreFailed.Error() + ": input/output error; check the disk and restart meshca\n"
			require.Contains(t, out, "put 0: <nil>\n")
			require.Contains(t, out, "put 1: <nil>\n")
			require.Contains(t, out, "checkpoint: input/output error\n")
			require.Contains(t, out, "put 2: "+failed)
			require.Contains(t, out, "get 1: <nil>\n")
			require.Contains(t, out, "add generation: "+failed)
			require.Contains(t, out, "healthy: "+failed, "readiness must report the failed store")
		})
	}
}

// A failed sync of bbolt's data pages comes before the meta page: bbolt
// rolls the checkpoint back cleanly, its records stay in the journal, and
// the store goes on; the next Open applies them.
func TestPutIssuance_AFailedCheckpointDataSyncKeepsTheRecordsInTheJournal(t *testing.T) {
	for _, mode := range journalModes {
		t.Run(mode, func(t *testing.T) {
			path, out := runFailedSyncHelper(t, mode, failedSyncs[mode].data)
			require.Contains(t, out, "put 0: <nil>\n")
			require.Contains(t, out, "put 1: <nil>\n")
			require.Contains(t, out, "checkpoint: input/output error\n")
			require.Contains(t, out, "put 2: <nil>\n")
			require.Contains(t, out, "get 1: <nil>\n")
			require.Contains(t, out, "add generation: <nil>\n")
			require.Contains(t, out, "healthy: <nil>\n")
			s, err := Open(path)
			require.NoError(t, err)
			defer s.Close()
			require.Len(t, listAll(t, s), 3, "the helper exited without Close: Open replays the journal")
		})
	}
}

// runFailedSyncHelper runs the helper in journal mode with the fault's
// call failing and returns the store's path and the helper's output.
func runFailedSyncHelper(t *testing.T, mode string, fault faultAt) (string, string) {
	t.Helper()
	path, out, err := runUnderFault(t, "TestPutIssuance_FailedSyncHelper", failedSyncHelperEnv, fault, "EIO", journalModeEnv(mode))
	require.NoError(t, err, out)
	require.Contains(t, out, "journal: "+mode+"\n", "the test's file system takes direct I/O")
	return path, out
}

// runUnderFault creates a store and closes it, then runs the helper test
// on it (its path in helperEnv, and env) under strace, with the fault's
// call failing with errno. It returns the store's path, the helper's
// output and how it exited.
func runUnderFault(t *testing.T, helper, helperEnv string, fault faultAt, errno string, env ...string) (string, string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meshca.db")
	s, err := Open(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	strace, err := exec.LookPath("strace")
	require.NoError(t, err, "strace must be installed (make deps)")
	cmd := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace="+fault.syscall,
		"-e", fmt.Sprintf("inject=%s:error=%s:when=%d", fault.syscall, errno, fault.when),
		os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+path), env...)
	out, err := cmd.CombinedOutput()
	return path, string(out), err
}

const newStoreHelperEnv = "MESHCA_BOLTSTORE_NEW_STORE_HELPER"

// TestOpen_NewStoreHelper is not a test: it runs under strace, creates a
// store in directories that do not exist yet and acknowledges one record.
func TestOpen_NewStoreHelper(t *testing.T) {
	path := os.Getenv(newStoreHelperEnv)
	if path == "" {
		return
	}
	s, err := Open(path)
	require.NoError(t, err)
	rec := record(0, t0.Add(24*time.Hour))
	require.NoError(t, s.PutIssuance(context.Background(), rec))
	fmt.Fprintf(os.Stdout, "ack %s\n", rec.Serial)
	os.Exit(0)
}

// A file's data and its name are synced separately (fsync(2): syncing a
// file "does not necessarily ensure that the entry in the directory
// containing the file has also reached disk"). A store created by Open
// must have its name, and the names of the directories Open created,
// synced before the first record is acknowledged; bbolt syncs neither.
func TestOpen_NewStoreIsNamedDurablyBeforeTheFirstAcknowledgement(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	path := filepath.Join(base, "new", "data", "meshca.db")
	traceFile := filepath.Join(base, "strace.out")
	cmd, err := syncorder.Command(traceFile, os.Args[0], "-test.run=^TestOpen_NewStoreHelper$", "-test.count=1")
	require.NoError(t, err, "strace must be installed (make deps)")
	cmd.Env = append(os.Environ(), newStoreHelperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	tr, err := syncorder.ParseFile(traceFile)
	require.NoError(t, err)

	serial := record(0, t0).Serial
	c, err := tr.DurableBeforeReply(path, syncorder.RecordMarker(serial), ackOf(serial))
	require.NoError(t, err)
	created, ok := tr.First(0, func(c syncorder.Call) bool { return c.IsWrite() && c.Path == path })
	require.True(t, ok)
	for _, dir := range []string{filepath.Dir(path), filepath.Dir(filepath.Dir(path)), base} {
		_, ok := tr.First(created.Exit, func(s syncorder.Call) bool {
			return s.IsSync() && s.Path == dir && s.Exit < c.Reply.Entry
		})
		require.True(t, ok, "directory %s is not fsynced between the store's creation and the first acknowledgement", dir)
	}
}

// openOnOneThread opens the store at path so that Open and every commit run
// on one locked OS thread: strace's per-thread count of fdatasync calls is
// then the process's count, and a fault injected at the Nth call hits a
// known commit.
func openOnOneThread(t *testing.T, path string) *Store {
	t.Helper()
	txs := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range txs {
			f()
		}
	}()
	var s *Store
	opened := make(chan error)
	txs <- func() {
		var err error
		s, err = Open(path)
		opened <- err
	}
	require.NoError(t, <-opened)
	s.w.update = func(fn func(*bolt.Tx) error) error {
		done := make(chan error)
		txs <- func() { done <- s.db.Update(fn) }
		return <-done
	}
	s.writes.j.sync = func(f *os.File) error {
		done := make(chan error)
		txs <- func() { done <- fdatasync(f) }
		return <-done
	}
	s.writes.j.writeDSync = func(f *os.File, b []byte, off int64) error {
		done := make(chan error)
		txs <- func() { done <- pwriteDSync(f, b, off) }
		return <-done
	}
	return s
}

// journalModeOf is how s writes its journal: "direct" or "buffered".
func journalModeOf(s *Store) string {
	if s.writes.j.direct != nil {
		return "direct"
	}
	return "buffered"
}

// The first direct write at Open shows whether the file system takes
// direct I/O with RWF_DSYNC: refused (EINVAL, EOPNOTSUPP), the journal
// falls back to pwrite and fdatasync; an I/O error fails Open instead of
// being taken for a missing feature.
func TestOpen_AnIOErrorOnTheJournalsFirstDirectWriteFailsOpen(t *testing.T) {
	for errno, want := range map[string]string{
		"EIO":    "write its first block: input/output error",
		"EINVAL": "journal: buffered\nput 0: <nil>\n",
	} {
		t.Run(errno, func(t *testing.T) {
			_, out, err := runUnderFault(t, "TestPutIssuance_FailedSyncHelper", failedSyncHelperEnv,
				faultAt{"pwritev2", 1}, errno, journalModeEnv("direct"))
			require.Contains(t, out, want)
			if errno == "EIO" {
				require.Error(t, err, "Open fails")
			} else {
				require.NoError(t, err, out)
			}
		})
	}
}
