// Package boltstore is meshca's embedded store: one bbolt file, crash-safe
// (every acknowledged write is fsynced), schema-versioned. Issuance records
// are group-committed by a single writer to a journal beside the file (one
// write and one fdatasync per group) and applied to bbolt in batches
// (journal.go), so that the disk is never the bottleneck of signing and an
// idle store adds no delay.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca/store"
)

// SchemaVersion is the on-disk layout this code reads and writes. 4 split
// the issuance journal in two regions, the second of a newer epoch than
// the store's while a transaction applies the first (journal.go): a
// meshca of version 3 would ignore those records after an unclean stop. 3
// added the issuance journal beside the file: an older meshca would
// ignore the records of an unclean stop in it, so it must refuse the
// store. 2 added
// the issuance indexes (the generation and identity of each record in its
// expiry entry, and an index by generation; see index.go), the
// revocations and the CRL numbers; Open indexes the records of a version 1
// store. The alert states' bucket came later without a new version: Open
// creates it in a store that lacks it, and older meshca ignores it.
const SchemaVersion = 4

var (
	bucketMeta             = []byte("meta")
	bucketIssuances        = []byte("issuances")
	bucketExpiry           = []byte("issuances_by_expiry")
	bucketByGeneration     = []byte("issuances_by_generation")
	bucketGenerations      = []byte("generations")
	bucketRevocations      = []byte("revocations")
	bucketRevocationSeq    = []byte("revocations_by_seq")
	bucketRevocationExpiry = []byte("revocations_by_expiry")
	bucketCRLNumbers       = []byte("crl_numbers")
	bucketAlertStates      = []byte("alert_states")
	keySchema              = []byte("schema_version")
	keyJournalEpoch        = []byte("journal_epoch")

	allBuckets = [][]byte{
		bucketIssuances, bucketExpiry, bucketByGeneration, bucketGenerations,
		bucketRevocations, bucketRevocationSeq, bucketRevocationExpiry, bucketCRLNumbers,
		bucketAlertStates,
	}
)

// ErrLocked is returned by Open when another process (a running
// 'meshca serve') holds the store file's lock; test it with errors.Is.
var ErrLocked = errors.New("locked by another meshca process")

// Store is a bbolt-backed store.Store.
type Store struct {
	db *bolt.DB
	// w runs every read-write transaction after Open, failing closed.
	w      *failClosedWriter
	writes *groupCommitter
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Reserver = (*Store)(nil)
)

// Option configures Open.
type Option func(*options)

type options struct {
	commitDelay time.Duration
	clock       clock.Clock
}

// WithCommitDelay sets how long a commit waits at most for records that
// are reserved (being signed) but not yet queued: store.commitDelay. The
// default, 0, commits at once.
func WithCommitDelay(d time.Duration) Option { return func(o *options) { o.commitDelay = d } }

// WithClock sets the clock of the commit delay (tests).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// Open opens (creating if needed) the store at path. It fails with a clear
// message when another process holds the file or the schema is newer.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{clock: clock.RealClock{}}
	for _, f := range opts {
		f(&o)
	}
	dir := filepath.Dir(path)
	newDirs := missingDirs(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	// NoSync stays false (bbolt fdatasyncs each commit) except in the
	// meshca_nosync_check build of the durability tests.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: checkNoSync, NoGrowSync: checkNoSync})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("store %s is %w; stop it or use another --dir", path, ErrLocked)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// bbolt syncs the file, not its name: sync the directories that gained
	// an entry (the file, the directories MkdirAll made) before any record
	// in the file is acknowledged. The file's directory is synced at every
	// Open, not only the one that created the file: that one may have been
	// killed before its sync.
	named := []string{dir}
	for _, d := range newDirs {
		named = append(named, filepath.Dir(d))
	}
	if err := syncDirs(named); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: sync its directory: %w", path, err)
	}
	if checkNoSync {
		fmt.Fprintf(os.Stderr, "meshca_nosync_check build: store %s is NOT fsynced; for the durability tests only\n", path)
	}
	s := &Store{db: db}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s.w = newFailClosedWriter(db)
	j, lastKey, err := s.openJournal(path + journalSuffix)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	// Concurrent issuance records share a journal write and its fdatasync
	// (see groupCommitter).
	s.writes = newGroupCommitter(s.w, db.View, j, lastKey, o.commitDelay, o.clock)
	return s, nil
}

// openJournal opens the issuance journal at path, applies the records it
// holds to bbolt (those of an unclean stop) and empties it. It returns the
// journal and the greatest serial recorded.
func (s *Store) openJournal(path string) (*journal, []byte, error) {
	var epoch uint64
	var lastKey []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyJournalEpoch); len(v) == 8 {
			epoch = binary.BigEndian.Uint64(v)
		}
		k, _ := tx.Bucket(bucketIssuances).Cursor().Last()
		lastKey = bytes.Clone(k)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	j, recs, created, err := openJournal(path, epoch)
	if err != nil {
		return nil, nil, err
	}
	if created {
		// The journal's name must survive a power loss before the first
		// record in it is acknowledged (see syncDirs).
		if err := syncDirs([]string{filepath.Dir(path)}); err != nil {
			j.close()
			return nil, nil, fmt.Errorf("sync the issuance journal's directory: %w", err)
		}
	}
	used, err := j.used()
	if err != nil {
		j.close()
		return nil, nil, fmt.Errorf("read the issuance journal: %w", err)
	}
	if len(recs) == 0 && !used {
		return j, lastKey, nil
	}
	// Apply what is there and raise the epoch past every frame replayed,
	// so that no frame now in the file (applied, torn or older) is ever
	// taken for a new one.
	next := j.epoch + 1
	slices.SortFunc(recs, func(a, b *pendingPut) int { return bytes.Compare(a.key, b.key) })
	err = s.w.Update(func(tx *bolt.Tx) error {
		if err := applyRecords(tx, recs); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyJournalEpoch, u64(next))
	})
	if err != nil {
		j.close()
		return nil, nil, fmt.Errorf("apply the %d records of the issuance journal: %w", len(recs), err)
	}
	j.reset(next)
	if len(recs) == 0 {
		return j, lastKey, nil
	}
	if last := recs[len(recs)-1].key; bytes.Compare(last, lastKey) > 0 {
		lastKey = last
	}
	return j, lastKey, nil
}

func (s *Store) migrate() error {
	var from uint64
	current := false // the layout is SchemaVersion after the first transaction
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			from = binary.BigEndian.Uint64(v)
			if from > SchemaVersion {
				return fmt.Errorf("schema version %d is newer than this meshca understands (%d); upgrade meshca", from, SchemaVersion)
			}
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if from == SchemaVersion {
			current = true
			return nil
		}
		if k, _ := tx.Bucket(bucketIssuances).Cursor().First(); from >= 2 || from == 0 && k == nil {
			// A new store has nothing to index; a version 2 store is
			// indexed already (3 only adds the journal, 4 its regions).
			current = true
			return meta.Put(keySchema, u64(SchemaVersion))
		}
		return nil
	})
	if err != nil || current {
		return err
	}
	if err := buildIssuanceIndexes(s.db); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, u64(SchemaVersion))
	})
}

// Close closes the file.
func (s *Store) Close() error {
	s.writes.close()
	jerr := s.writes.j.close()
	return errors.Join(s.db.Close(), jerr)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func serialKey(serial string) ([]byte, error) {
	k, err := hex.DecodeString(serial)
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("serial %q is not hex", serial)
	}
	return k, nil
}

func expiryKey(notAfter time.Time, serial []byte) []byte {
	k := make([]byte, 8, 8+len(serial))
	binary.BigEndian.PutUint64(k, uint64(notAfter.Unix()))
	return append(k, serial...)
}

// newPendingPut encodes rec for the group commit.
func newPendingPut(rec store.Issuance) (*pendingPut, error) {
	k, err := serialKey(rec.Serial)
	if err != nil {
		return nil, err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	// A record is acknowledged from its journal frame: one that a replay
	// would not read back (decodeFrames) is refused here.
	if len(k) > 0xffff || 2+len(k)+len(v) > maxFramePayload {
		return nil, fmt.Errorf("the issuance record of serial %s is %d bytes, over the issuance journal's limit of %d", rec.Serial, 2+len(k)+len(v), maxFramePayload)
	}
	ek, ev, gk := indexEntries(k, rec.NotAfter.Unix(), rec.Generation, rec.Identity)
	return &pendingPut{
		key: k, value: v, expiryKey: ek, expiryValue: ev, generationKey: gk,
		done: make(chan error, 1),
	}, nil
}

// PutIssuance durably stores rec: it returns after the transaction holding
// it is fsynced. Concurrent calls share one commit.
func (s *Store) PutIssuance(ctx context.Context, rec store.Issuance) error {
	return s.putIssuance(ctx, rec, nil)
}

// putIssuance is PutIssuance; arriving, when not nil, runs once, just
// before the record is queued for the group commit or has failed before.
func (s *Store) putIssuance(ctx context.Context, rec store.Issuance, arriving func()) error {
	p, err := newPendingPut(rec)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if arriving != nil {
			arriving()
		}
		return err
	}
	return s.writes.put(ctx, p, arriving)
}

// Reserve implements store.Reserver: the next commit waits (up to the
// commit delay) for the reserved record while it is being signed.
func (s *Store) Reserve() store.Reservation {
	s.writes.reserve()
	return &reservation{s: s}
}

type reservation struct {
	s    *Store
	done atomic.Bool
}

func (r *reservation) end(cancelled bool) {
	if r.done.CompareAndSwap(false, true) {
		r.s.writes.unreserve(cancelled)
	}
}

func (r *reservation) PutIssuance(ctx context.Context, rec store.Issuance) error {
	if r.done.Load() {
		return errors.New("reservation already used")
	}
	return r.s.putIssuance(ctx, rec, func() { r.end(false) })
}

func (r *reservation) Cancel() { r.end(true) }

// GetIssuance returns the record for serial or store.ErrNotFound.
func (s *Store) GetIssuance(_ context.Context, serial string) (store.Issuance, error) {
	k, err := serialKey(serial)
	if err != nil {
		return store.Issuance{}, err
	}
	var rec store.Issuance
	if v, ok := s.writes.lookup(k); ok {
		return rec, json.Unmarshal(v, &rec)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIssuances).Get(k)
		if v == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(v, &rec)
	})
	return rec, err
}

// ListIssuances walks the records in serial order.
func (s *Store) ListIssuances(ctx context.Context, fn func(store.Issuance) bool) error {
	if err := s.writes.flush(ctx); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketIssuances).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec store.Issuance
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			if !fn(rec) {
				return nil
			}
		}
		return nil
	})
}

// PruneIssuances deletes records that expired before cutoff, in chunks so
// that a large prune never blocks issuance for long.
func (s *Store) PruneIssuances(ctx context.Context, cutoff time.Time) (int, error) {
	const chunk = 1000
	total := 0
	limit := u64(uint64(cutoff.Unix()))
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		// After a checkpoint that empties the journal, on the commit
		// loop: a frame of a record it deletes must not be left to replay.
		err := s.writes.deleteRecords(ctx, func(tx *bolt.Tx) error {
			idx, recs, byGen := tx.Bucket(bucketExpiry), tx.Bucket(bucketIssuances), tx.Bucket(bucketByGeneration)
			c := idx.Cursor()
			for k, v := c.First(); k != nil && n < chunk; k, v = c.First() {
				if string(k[:8]) >= string(limit) {
					break
				}
				// The entry's value names the record's generation entry.
				if len(v) < 8 {
					return fmt.Errorf("expiry index entry %x has no index value", k)
				}
				if err := byGen.Delete(generationKey(binary.BigEndian.Uint64(v), k[8:])); err != nil {
					return err
				}
				if err := recs.Delete(k[8:]); err != nil {
					return err
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil || n < chunk {
			return total, err
		}
	}
}
