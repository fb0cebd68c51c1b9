package boltstore

import (
	"bytes"
	"context"
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many records one transaction commits.
const maxGroup = 1000

// appendFillPercent is how full bbolt packs the pages it splits in the
// issuance buckets. Serials (policy.RandomSerial) and expiry keys grow with
// time, so inserts append at the right edge of the B+tree; the bbolt docs
// recommend a high Bucket.FillPercent for append-only workloads, instead of
// the default 0.5 that leaves every split page half empty for good. A page
// holds about ten records, so anything below 1.0 already leaves a slot of
// each page empty; a record committed late (its serial minted before those
// of an earlier group) splits a full page at worst, which stays correct.
const appendFillPercent = 1.0

// errClosed is returned for writes after Close.
var errClosed = errors.New("store is closed")

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
	// update runs the read-write transaction (failClosedWriter.Update).
	update  func(func(*bolt.Tx) error) error
	queue   chan *pendingPut
	stopped chan struct{}
	once    sync.Once
	mu      sync.RWMutex
	closed  bool
}

func newGroupCommitter(update func(func(*bolt.Tx) error) error) *groupCommitter {
	g := &groupCommitter{update: update, queue: make(chan *pendingPut, maxGroup), stopped: make(chan struct{})}
	go g.run()
	return g
}

func (g *groupCommitter) run() {
	defer close(g.stopped)
	group := make([]*pendingPut, 0, 64)
	for first := range g.queue {
		group = append(group[:0], first)
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
		clear(group) // the next group reuses the array; drop the records
	}
}

// commit writes group in one transaction and returns when it is fsynced.
func (g *groupCommitter) commit(group []*pendingPut) error {
	return g.update(func(tx *bolt.Tx) error {
		recs, idx := tx.Bucket(bucketIssuances), tx.Bucket(bucketExpiry)
		recs.FillPercent, idx.FillPercent = appendFillPercent, appendFillPercent
		// A serial that sorts after the bucket's last key is not recorded:
		// with time-ordered serials (policy.RandomSerial) that is nearly
		// every one, and it saves looking each of them up.
		last, _ := recs.Cursor().Last()
		last = bytes.Clone(last)
		for _, p := range group {
			if last != nil && bytes.Compare(p.key, last) <= 0 {
				if old := recs.Get(p.key); old != nil {
					if !bytes.Equal(old, p.value) {
						p.refused = ErrDuplicateSerial
					}
					continue // the same record again is a no-op
				}
			}
			if err := recs.Put(p.key, p.value); err != nil {
				return err
			}
			if err := idx.Put(p.expiryKey, nil); err != nil {
				return err
			}
			if bytes.Compare(p.key, last) > 0 {
				last = p.key
			}
		}
		return nil
	})
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
