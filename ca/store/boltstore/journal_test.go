package boltstore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshca/meshca/ca/store"
)

// holdCheckpoints keeps every record in the journal until a reader or
// Close asks for a checkpoint.
func holdCheckpoints(t *testing.T) {
	n, d := checkpointRecords, checkpointAfter
	t.Cleanup(func() { checkpointRecords, checkpointAfter = n, d })
	checkpointRecords, checkpointAfter = 1<<30, time.Hour
}

// inBolt reports whether bbolt itself (not the journal) holds serial.
func inBolt(t *testing.T, s *Store, serial string) bool {
	t.Helper()
	k, err := serialKey(serial)
	require.NoError(t, err)
	found := false
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketIssuances).Get(k) != nil
		return nil
	}))
	return found
}

// crash stops s as a SIGKILL would, after its acknowledgements: the
// committer stops without a checkpoint (bbolt refuses it, as failed) and
// the files are closed.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.w.mu.Lock()
	s.w.failed = errStoreFailed
	s.w.mu.Unlock()
	s.writes.close()
	require.NoError(t, s.writes.j.close())
	require.NoError(t, s.db.Close())
}

func TestJournal_ReadersSeeRecordsBeforeTheCheckpoint(t *testing.T) {
	holdCheckpoints(t)
	s, _ := openStore(t)
	ctx := context.Background()
	rec := record(1, t0.Add(time.Hour))
	require.NoError(t, s.PutIssuance(ctx, rec))
	require.False(t, inBolt(t, s, rec.Serial), "the record waits in the journal")

	got, err := s.GetIssuance(ctx, rec.Serial)
	require.NoError(t, err)
	require.Equal(t, rec, got, "GetIssuance reads the journaled record")
	require.False(t, inBolt(t, s, rec.Serial), "without a checkpoint")

	var byID []string
	require.NoError(t, s.ListIssuancesByIdentity(ctx, rec.Identity, func(r store.Issuance) bool {
		byID = append(byID, r.Serial)
		return true
	}))
	require.Equal(t, []string{rec.Serial}, byID)
	require.True(t, inBolt(t, s, rec.Serial), "a walk of bbolt's indexes checkpoints first")
}

func TestJournal_DuplicateSerialsAreRefusedFromTheJournalAndFromBbolt(t *testing.T) {
	holdCheckpoints(t)
	s, _ := openStore(t)
	ctx := context.Background()
	rec := record(1, t0.Add(time.Hour))
	other := rec
	other.Fingerprint = "ff"
	require.NoError(t, s.PutIssuance(ctx, rec))
	require.NoError(t, s.PutIssuance(ctx, rec), "the same record again is a no-op")
	require.ErrorIs(t, s.PutIssuance(ctx, other), ErrDuplicateSerial, "refused against the journal")

	require.NoError(t, s.writes.flush(ctx))
	require.True(t, inBolt(t, s, rec.Serial))
	// A later serial first, so that rec's is below the greatest recorded.
	require.NoError(t, s.PutIssuance(ctx, record(5, t0.Add(time.Hour))))
	require.NoError(t, s.PutIssuance(ctx, rec))
	require.ErrorIs(t, s.PutIssuance(ctx, other), ErrDuplicateSerial, "refused against bbolt")
	got, err := s.GetIssuance(ctx, rec.Serial)
	require.NoError(t, err)
	require.Equal(t, rec, got)
	require.Len(t, listAll(t, s), 2)
}

// The records acknowledged from the journal survive a stop without a
// checkpoint: the next Open applies them with their indexes, raises the
// epoch and empties the journal.
func TestJournal_OpenAppliesTheRecordsOfAnUncleanStop(t *testing.T) {
	holdCheckpoints(t)
	s, path := openStore(t)
	ctx := context.Background()
	var recs []store.Issuance
	for i := range 50 {
		recs = append(recs, record(i, t0.Add(time.Duration(i%5)*time.Hour)))
	}
	putAll(t, s, recs)
	require.Positive(t, s.writes.j.off)
	crash(t, s)

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.Zero(t, s.writes.j.off, "applied: new frames start over")
	fi, err := os.Stat(path + journalSuffix)
	require.NoError(t, err)
	require.Equal(t, journalSize, fi.Size())
	for _, r := range recs {
		require.True(t, inBolt(t, s, r.Serial), r.Serial)
	}
	require.Len(t, listAll(t, s), 50)
	n := 0
	require.NoError(t, s.ListIssuancesByGeneration(ctx, 1, func(store.Issuance) bool { n++; return true }))
	require.Equal(t, 50, n, "the generation index")
	n = 0
	require.NoError(t, s.ListExpiries(ctx, t0.Add(-time.Hour), func(time.Time, string) bool { n++; return true }))
	require.Equal(t, 50, n, "the expiry index")
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		require.Equal(t, u64(1), tx.Bucket(bucketMeta).Get(keyJournalEpoch))
		return nil
	}))
}

// A crash tears the last write of the journal: its frame was never
// acknowledged (the acknowledgement waits for the sync), and Open applies
// the frames before it.
func TestJournal_ATornLastFrameIsNotApplied(t *testing.T) {
	holdCheckpoints(t)
	s, path := openStore(t)
	ctx := context.Background()
	for i := range 3 {
		require.NoError(t, s.PutIssuance(ctx, record(i, t0.Add(time.Hour))))
	}
	end := int(s.writes.j.off)
	crash(t, s)
	jp := path + journalSuffix
	data, err := os.ReadFile(jp)
	require.NoError(t, err)
	for _, cut := range []int{1, frameHeader - 1, frameHeader + 5} {
		torn := append(append([]byte(nil), data[:end-cut]...), make([]byte, cut)...)
		recs, _, err := decodeFrames(torn, 0)
		require.NoError(t, err)
		require.Len(t, recs, 2, "cut %d bytes", cut)
	}
	flipped := append([]byte(nil), data...)
	flipped[end-3] ^= 1 // the last record's JSON: its checksum fails
	require.NoError(t, os.WriteFile(jp, flipped, 0o600))

	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.True(t, inBolt(t, s, record(0, t0).Serial))
	require.True(t, inBolt(t, s, record(1, t0).Serial))
	_, err = s.GetIssuance(ctx, record(2, t0).Serial)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A checkpoint raises the epoch in the transaction that applies the
// records and then truncates the journal without a sync. If a crash
// undoes the truncation, the new frames overwrite the start of the old
// ones and the rest of those follows them: Open applies the new frames
// and stops at the first of the older epoch, so a record applied (and
// since pruned) is not brought back.
func TestJournal_FramesOfAnOlderEpochAreNotReplayed(t *testing.T) {
	holdCheckpoints(t)
	s, path := openStore(t)
	ctx := context.Background()
	jp := path + journalSuffix
	for i := range 4 {
		require.NoError(t, s.PutIssuance(ctx, record(i, t0.Add(time.Hour))))
	}
	old, err := os.ReadFile(jp)
	require.NoError(t, err)
	old = old[:s.writes.j.off]
	require.NoError(t, s.writes.flush(ctx)) // epoch 0 -> 1, the journal emptied
	n, err := s.PruneIssuances(ctx, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	// A frame as long as each old one: the old frames that follow it are
	// whole, with valid checksums; only their epoch tells.
	require.NoError(t, s.PutIssuance(ctx, record(9, t0.Add(3*time.Hour))))
	crash(t, s)
	cur, err := os.ReadFile(jp)
	require.NoError(t, err)
	// Frames overwrite the old ones in place: no crash is needed for this.
	require.Equal(t, old[len(old)/4:], cur[len(old)/4:len(old)], "the old frames follow the new one")
	require.NotEqual(t, old[:len(old)/4], cur[:len(old)/4])

	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.True(t, inBolt(t, s, record(9, t0).Serial), "the frame of the current epoch is applied")
	got := listAll(t, s)
	require.Len(t, got, 1, "no pruned record of epoch 0 comes back")
}

// Open raises the epoch when the journal holds anything, even nothing to
// apply (a torn first frame): bytes of that write left in the file are
// then never taken for frames of the new epoch.
func TestJournal_OpenRaisesTheEpochOfAUsedJournal(t *testing.T) {
	// At the start, or only on a later page (a crash kept that page of a
	// write and lost its first).
	for _, at := range []int64{0, 8192} {
		t.Run(fmt.Sprintf("bytes at %d", at), func(t *testing.T) {
			holdCheckpoints(t)
			s, path := openStore(t)
			require.NoError(t, s.Close())
			jp := path + journalSuffix
			f, err := os.OpenFile(jp, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte("torn frame, never acknowledged"), at)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			s, err = Open(path)
			require.NoError(t, err)
			require.EqualValues(t, 1, s.writes.j.epoch)
			rec := record(1, t0.Add(time.Hour))
			require.NoError(t, s.PutIssuance(context.Background(), rec))
			crash(t, s)
			s, err = Open(path)
			require.NoError(t, err)
			defer s.Close()
			require.True(t, inBolt(t, s, rec.Serial))
			require.EqualValues(t, 2, s.writes.j.epoch)
		})
	}
}

// A region that is full moves the next group to the other region, or,
// while the other's records are not all in bbolt, checkpoints first.
func TestJournal_AFullRegionMovesOnOrCheckpointsFirst(t *testing.T) {
	holdCheckpoints(t)
	size := journalSize
	t.Cleanup(func() { journalSize = size }) // after the store's Close
	journalSize = 8192                       // regions of about 12 frames
	s, _ := openStore(t)
	ctx := context.Background()
	for i := range 40 { // about 330 bytes each
		require.NoError(t, s.PutIssuance(ctx, record(i, t0.Add(time.Hour))))
	}
	require.True(t, inBolt(t, s, record(0, t0).Serial), "checkpointed when both regions were taken")
	require.Len(t, listAll(t, s), 40)
}

func TestJournal_OpenCreatesItBesideTheStoreWithMode0600(t *testing.T) {
	_, path := openStore(t)
	fi, err := os.Stat(filepath.Join(filepath.Dir(path), "meshca.db"+journalSuffix))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.Equal(t, journalSize, fi.Size(), "written with zeros once")
}

const (
	fullDiskHelperEnv = "MESHCA_BOLTSTORE_FULL_DISK_HELPER"
	// fullDiskLimitEnv is where the helper's file size limit cuts the
	// next write: block, frame or sector (see the helper).
	fullDiskLimitEnv = "MESHCA_BOLTSTORE_FULL_DISK_LIMIT"
)

// TestJournal_FullDiskHelper is not a test: the test below runs it in its
// own process, whose file size limit (setrlimit(2) RLIMIT_FSIZE) it lowers
// below the journal's next frame for one record, as a full disk would.
func TestJournal_FullDiskHelper(t *testing.T) {
	path := os.Getenv(fullDiskHelperEnv)
	if path == "" {
		return
	}
	holdCheckpoints(t)
	setJournalMode()
	s, err := Open(path)
	require.NoError(t, err)
	ctx := context.Background()
	fmt.Printf("put 0: %v\n", s.PutIssuance(ctx, record(0, t0.Add(time.Hour))))
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim))
	block := s.writes.j.off &^ (directBlock - 1) // where a direct write starts
	limit := map[string]int64{
		"block":  block,          // every write refused (EFBIG)
		"frame":  s.writes.j.off, // a direct write cut to an unaligned length (EINVAL)
		"sector": block + 512,    // a direct write cut to one sector (a short write)
	}[os.Getenv(fullDiskLimitEnv)]
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(limit), Max: lim.Max}))
	fmt.Printf("put 1: %v\n", s.PutIssuance(ctx, record(1, t0.Add(time.Hour))))
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim))
	fmt.Printf("put 2: %v\n", s.PutIssuance(ctx, record(2, t0.Add(time.Hour))))
	fmt.Printf("healthy: %v\n", s.Healthy())
	os.Exit(0) // no Close: the next Open replays the journal
}

// A write to the journal that fails (a full disk) syncs nothing and fails
// only its group: the store stays healthy, the next group overwrites it,
// and only the acknowledged records are replayed.
func TestJournal_AFailedWriteFailsOnlyItsGroup(t *testing.T) {
	for _, mode := range journalModes {
		for _, limit := range []string{"block", "frame", "sector"} {
			t.Run(mode+"/"+limit, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "meshca.db")
				cmd := exec.Command(os.Args[0], "-test.run=^TestJournal_FullDiskHelper$", "-test.count=1")
				cmd.Env = append(os.Environ(), fullDiskHelperEnv+"="+path, fullDiskLimitEnv+"="+limit, journalModeEnv(mode))
				b, err := cmd.CombinedOutput()
				out := string(b)
				require.NoError(t, err, out)
				require.Contains(t, out, "put 0: <nil>\n")
				if limit == "block" {
					require.Contains(t, out, "put 1: write "+path+journalSuffix+": file too large\n")
				} else {
					require.Contains(t, out, "put 1: write "+path+journalSuffix+": ")
				}
				require.Contains(t, out, "put 2: <nil>\n")
				require.Contains(t, out, "healthy: <nil>\n")
				s, err := Open(path)
				require.NoError(t, err)
				defer s.Close()
				got := listAll(t, s)
				require.Len(t, got, 2)
				require.Equal(t, record(0, t0).Serial, got[0].Serial)
				require.Equal(t, record(2, t0).Serial, got[1].Serial)
			})
		}
	}
}

// Two puts of the same different record under a recorded serial, in one
// group: both are refused, as they would be one at a time. Deciding the
// second against the first (and not against what is recorded) acknowledged
// a record that is not stored. The recorded record itself, in a group with
// a different one, stays a no-op.
func TestJournal_ADuplicateWithinAGroupIsDecidedAgainstTheRecordedOne(t *testing.T) {
	s, clk, _ := openDelayed(t, time.Hour)
	ctx := context.Background()
	rec := record(1, t0.Add(time.Hour))
	other := rec
	other.Fingerprint = "ff"
	require.NoError(t, s.PutIssuance(ctx, rec))
	for _, second := range []store.Issuance{other, rec} {
		a, b := s.Reserve(), s.Reserve()
		done1 := putAsync(a.PutIssuance, other)
		waitForTimer(t, clk)
		done2 := putAsync(b.PutIssuance, second)
		require.ErrorIs(t, <-done1, ErrDuplicateSerial)
		if second == other {
			require.ErrorIs(t, <-done2, ErrDuplicateSerial, "the second copy in the group")
		} else {
			require.NoError(t, <-done2, "the same record again is a no-op")
		}
		got, err := s.GetIssuance(ctx, rec.Serial)
		require.NoError(t, err)
		require.Equal(t, rec, got)
	}
}

// A record is acknowledged only if a replay would read it back: a frame
// longer than the replay accepts (maxFramePayload) ended the replay, so
// the record was acknowledged and lost by the next Open.
func TestJournal_ARecordTooLargeToReplayIsNotAcknowledged(t *testing.T) {
	holdCheckpoints(t)
	s, path := openStore(t)
	ctx := context.Background()
	big := record(1, t0.Add(time.Hour))
	big.Requester = strings.Repeat("x", maxFramePayload)
	err := s.PutIssuance(ctx, big)
	crash(t, s)
	s, oerr := Open(path)
	require.NoError(t, oerr)
	defer s.Close()
	_, gerr := s.GetIssuance(ctx, big.Serial)
	if err == nil {
		require.NoError(t, gerr, "acknowledged, so it must survive a crash")
	} else {
		require.ErrorIs(t, gerr, store.ErrNotFound)
	}
}

// The same record again is a no-op and writes nothing: a frame of it in
// the journal outlived a prune of the record (no checkpoint follows a
// group of no-ops, nothing being pending) and Open brought it back.
func TestJournal_ANoOpPutWritesNoFrameThatAReplayCouldBringBack(t *testing.T) {
	holdCheckpoints(t)
	s, path := openStore(t)
	ctx := context.Background()
	rec := record(1, t0.Add(time.Hour))
	require.NoError(t, s.PutIssuance(ctx, rec))
	require.NoError(t, s.writes.flush(ctx))
	require.NoError(t, s.PutIssuance(ctx, rec), "the same record again is a no-op")
	require.Zero(t, s.writes.j.off, "a no-op is not journaled")
	n, err := s.PruneIssuances(ctx, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	crash(t, s)
	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.GetIssuance(ctx, rec.Serial)
	require.ErrorIs(t, err, store.ErrNotFound, "the pruned record stays pruned")
}

// A group whose frames exceed a region is written in parts, each
// in a region with room: refusing it failed the whole store closed
// although nothing was written.
func TestJournal_AGroupLargerThanTheJournalIsWrittenInParts(t *testing.T) {
	size := journalSize
	t.Cleanup(func() { journalSize = size }) // after the store's Close
	journalSize = 8192                       // regions of about 12 frames
	s, clk, _ := openDelayed(t, time.Hour)
	const n = 40
	rs := make([]store.Reservation, n)
	for i := range rs {
		rs[i] = s.Reserve()
	}
	var dones []<-chan error
	for i, r := range rs {
		dones = append(dones, putAsync(r.PutIssuance, record(i, t0.Add(time.Hour))))
		if i == 0 {
			waitForTimer(t, clk)
		}
	}
	for _, d := range dones {
		require.NoError(t, <-d)
	}
	require.NoError(t, s.Healthy())
	require.Len(t, listAll(t, s), n)
}

// The journal's name must be durable before a record in it is
// acknowledged: an Open killed after creating the file and before syncing
// its directory leaves a file that the next Open did not count as created,
// so it never synced the directory.
func TestJournal_OpenSyncsTheDirectoryOfAJournalItHadToFill(t *testing.T) {
	s, path := openStore(t)
	require.NoError(t, s.Close())
	jp := path + journalSuffix
	require.NoError(t, os.Truncate(jp, 100)) // killed during the first fill
	// The directory is synced after the journal is whole (Open syncs the
	// store's directory first, for the store file).
	syncedWhole := false
	defer func(f func([]string) error) { syncDirs = f }(syncDirs)
	syncDirs = func(dirs []string) error {
		fi, err := os.Stat(jp)
		syncedWhole = syncedWhole || slices.Contains(dirs, filepath.Dir(jp)) && err == nil && fi.Size() == journalSize
		return nil
	}
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.True(t, syncedWhole)
}

// The store file's directory is synced at every Open: the Open that
// created the file may have been killed before it synced the name.
func TestOpen_SyncsTheStoreDirectoryEachTime(t *testing.T) {
	s, path := openStore(t)
	require.NoError(t, s.Close())
	var synced []string
	defer func(f func([]string) error) { syncDirs = f }(syncDirs)
	syncDirs = func(dirs []string) error { synced = append(synced, dirs...); return nil }
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, []string{filepath.Dir(path)}, synced, "the journal exists and is whole: only the store's sync")
}
