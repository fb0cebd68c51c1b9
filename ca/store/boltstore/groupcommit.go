package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many records one transaction commits.
const maxGroup = 1000

// errClosed is returned for writes after Close.
var errClosed = errors.New("store is closed")

// errStoreFailed is returned for every write after a commit failed once its
// meta page was written (see groupCommitter.run).
var errStoreFailed = errors.New("store: a commit failed after its meta page was written, so what is on disk is unknown")

// ErrDuplicateSerial refuses a second, different certificate under a serial
// that is already recorded: serials must be unique per CA.
var ErrDuplicateSerial = errors.New("a different certificate with this serial is already recorded")

// pendingPut is one issuance record waiting for the group commit.
type pendingPut struct {
	key, value, expiryKey []byte
	done                  chan error
	refused               error
}

// groupCommitter makes issuance records durable in groups without a timer:
// a single writer commits whatever has queued while the previous commit was
// on disk. An idle store commits a lone record at once (no batching delay);
// a busy one shares each fsync among every request that arrived meanwhile.
type groupCommitter struct {
	db *bolt.DB
	// update runs a read-write transaction: db.Update, replaced in tests
	// to inject commit failures that a real disk produces only rarely.
	update  func(func(*bolt.Tx) error) error
	queue   chan *pendingPut
	stopped chan struct{}
	// failed is set, by run only, once a commit failed after its meta page
	// was written; every later write gets it.
	failed error
	once   sync.Once
	mu     sync.RWMutex
	closed bool
}

func newGroupCommitter(db *bolt.DB) *groupCommitter {
	g := &groupCommitter{db: db, update: db.Update, queue: make(chan *pendingPut, maxGroup), stopped: make(chan struct{})}
	go g.run()
	return g
}

func (g *groupCommitter) run() {
	defer close(g.stopped)
	for first := range g.queue {
		group := []*pendingPut{first}
	drain:
		for len(group) < maxGroup {
			select {
			case p, ok := <-g.queue:
				if !ok {
					break drain
				}
				group = append(group, p)
			default:
				break drain
			}
		}
		err := g.commit(group)
		for _, p := range group {
			if err != nil {
				p.done <- err
			} else {
				p.done <- p.refused
			}
		}
	}
}

// commit writes group in one transaction and returns when it is fsynced.
//
// bbolt commits by writing the data pages, fdatasync, the meta page,
// fdatasync. When the last fdatasync fails, the transaction is reported
// failed but bbolt reads its meta pages through the mmap, so the failed
// transaction is already the current one in memory: later transactions
// would build on it, and on pages that Linux may have dropped after the
// failed writeback (fsync(2), "ERRORS"). Their commits would succeed and
// acknowledge records that a crash can lose. So after such a failure the
// store fails closed until meshca restarts and reopens it from the disk.
// A failure before the meta page (no space for the data pages, a failed
// data sync) is rolled back cleanly and only fails its own group.
func (g *groupCommitter) commit(group []*pendingPut) error {
	if g.failed != nil {
		return g.failed
	}
	var txid int
	err := g.update(func(tx *bolt.Tx) error {
		txid = tx.ID()
		recs, idx := tx.Bucket(bucketIssuances), tx.Bucket(bucketExpiry)
		for _, p := range group {
			if old := recs.Get(p.key); old != nil {
				if !bytes.Equal(old, p.value) {
					p.refused = ErrDuplicateSerial
				}
				continue // the same record again is a no-op
			}
			if err := recs.Put(p.key, p.value); err != nil {
				return err
			}
			if err := idx.Put(p.expiryKey, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && txid != 0 && g.visible(txid) {
		g.failed = fmt.Errorf("%w: %v; check the disk and restart meshca", errStoreFailed, err)
	}
	return err
}

// visible reports whether transaction txid is the current one in memory
// (true when that cannot be read: the store then fails closed).
func (g *groupCommitter) visible(txid int) bool {
	current := txid
	if err := g.db.View(func(tx *bolt.Tx) error { current = tx.ID(); return nil }); err != nil {
		return true
	}
	return current >= txid
}

// put queues p and waits until it is on disk (or failed). A caller whose
// context ends while waiting gets the context's error, and its record may
// still be committed: it was never acknowledged, so that is harmless.
func (g *groupCommitter) put(ctx context.Context, p *pendingPut) error {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return errClosed
	}
	select {
	case g.queue <- p:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting writes, commits what is queued and waits.
func (g *groupCommitter) close() {
	g.once.Do(func() {
		g.mu.Lock()
		g.closed = true
		close(g.queue)
		g.mu.Unlock()
		<-g.stopped
	})
}
