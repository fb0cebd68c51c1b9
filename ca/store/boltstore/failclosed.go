package boltstore

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// errStoreFailed is returned for every write after a commit failed once its
// meta page was written.
var errStoreFailed = errors.New("store: a commit failed after its meta page was written, so what is on disk is unknown")

// failClosedWriter runs every read-write transaction of a Store and stops
// the store after a commit whose outcome on disk is unknown.
//
// bbolt commits by writing the data pages, fdatasync, the meta page,
// fdatasync. When the last fdatasync fails, the transaction is reported
// failed but bbolt reads its meta pages through the mmap, so the failed
// transaction is already the current one in memory: later transactions
// would build on it, and on pages that Linux may have dropped after the
// failed writeback (fsync(2), ERRORS). Their commits would succeed and
// acknowledge records that a crash can lose. So after such a failure every
// write fails until meshca restarts and reopens the store from the disk.
// A failure before the meta page (no space for the data pages, a failed
// data sync, an error of the transaction itself) is rolled back cleanly and
// fails only its own transaction.
type failClosedWriter struct {
	db *bolt.DB
	// update runs a read-write transaction: db.Update, replaced in tests
	// that need the commits on one OS thread.
	update func(func(*bolt.Tx) error) error

	mu     sync.Mutex
	failed error
}

func newFailClosedWriter(db *bolt.DB) *failClosedWriter {
	return &failClosedWriter{db: db, update: db.Update}
}

// Update runs fn in a read-write transaction, as bolt.DB.Update does.
func (w *failClosedWriter) Update(fn func(*bolt.Tx) error) error {
	if err := w.err(); err != nil {
		return err
	}
	var txid int
	err := w.update(func(tx *bolt.Tx) error {
		txid = tx.ID()
		return fn(tx)
	})
	if err != nil && txid != 0 && w.visible(txid) {
		w.mu.Lock()
		if w.failed == nil {
			w.failed = fmt.Errorf("%w: %v; check the disk and restart meshca", errStoreFailed, err)
		}
		w.mu.Unlock()
	}
	return err
}

func (w *failClosedWriter) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// visible reports whether transaction txid is the current one in memory
// (true when that cannot be read: the store then fails closed).
func (w *failClosedWriter) visible(txid int) bool {
	current := txid
	if err := w.db.View(func(tx *bolt.Tx) error { current = tx.ID(); return nil }); err != nil {
		return true
	}
	return current >= txid
}

// Healthy is nil while the store accepts writes, and the reason once it has
// failed closed; meshca serve reports it on /readyz so that a replica whose
// disk failed is taken out of rotation.
func (s *Store) Healthy() error { return s.writes.err() }
