package boltstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"k8s.io/utils/clock"
)

// maxGroup bounds how many records one transaction commits.
const maxGroup = 1000

// appendFillPercent is how full bbolt packs the pages it splits in the
// issuances bucket. Serials (policy.RandomSerial) grow with time, so
// inserts append at the right edge of the B+tree; the bbolt docs
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
	key, value []byte
	// The record's index entries (index.go).
	expiryKey, expiryValue, generationKey []byte
	done                                  chan error
	refused                               error
}

// groupCommitter makes issuance records durable in groups: a single writer
// commits whatever has queued while the previous commit was on disk. An
// idle store commits a lone record at once (no batching delay). A busy one
// shares each commit among every request that arrived meanwhile and, when
// other records are reserved (being signed right now), waits up to delay
// for them to join, like PostgreSQL's commit_delay with commit_siblings:
// on a CPU-bound replica the records arrive a signing time apart, and
// committing each alone costs a transaction and two fsyncs per record.
type groupCommitter struct {
	// update runs the read-write transaction (failClosedWriter.Update).
	update  func(func(*bolt.Tx) error) error
	queue   chan *pendingPut
	stopped chan struct{}
	once    sync.Once
	mu      sync.RWMutex
	closed  bool

	delay time.Duration
	clock clock.Clock
	// reserved counts reservations whose record is not queued yet; poke
	// wakes a waiting commit when one is cancelled.
	reserved atomic.Int64
	poke     chan struct{}
}

func newGroupCommitter(update func(func(*bolt.Tx) error) error, delay time.Duration, clk clock.Clock) *groupCommitter {
	g := &groupCommitter{
		update: update, queue: make(chan *pendingPut, maxGroup), stopped: make(chan struct{}),
		delay: delay, clock: clk, poke: make(chan struct{}, 1),
	}
	go g.run()
	return g
}

func (g *groupCommitter) run() {
	defer close(g.stopped)
	group := make([]*pendingPut, 0, 64)
	for first := range g.queue {
		group = g.gather(append(group[:0], first))
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

// gather adds to group what is queued and, while reserved records are on
// their way, waits for them for at most delay after the first one.
func (g *groupCommitter) gather(group []*pendingPut) []*pendingPut {
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(group) < maxGroup {
		select {
		case p, ok := <-g.queue:
			if !ok {
				return group
			}
			group = append(group, p)
			continue
		default:
		}
		if g.delay <= 0 || g.reserved.Load() <= 0 {
			return group
		}
		if timer == nil {
			timer = g.clock.NewTimer(g.delay)
		}
		select {
		case p, ok := <-g.queue:
			if !ok {
				return group
			}
			group = append(group, p)
		case <-g.poke:
		case <-timer.C():
			return group
		}
	}
	return group
}

// reserve counts a record that is being signed.
func (g *groupCommitter) reserve() { g.reserved.Add(1) }

// unreserve ends a reservation: its record is queued, or it never will be.
func (g *groupCommitter) unreserve(cancelled bool) {
	g.reserved.Add(-1)
	if cancelled {
		select {
		case g.poke <- struct{}{}:
		default:
		}
	}
}

// commit writes group in one transaction and returns when it is fsynced.
func (g *groupCommitter) commit(group []*pendingPut) error {
	return g.update(func(tx *bolt.Tx) error {
		recs, idx := tx.Bucket(bucketIssuances), tx.Bucket(bucketExpiry)
		byGen := tx.Bucket(bucketByGeneration)
		// The serial bucket and the generation index (generation || serial;
		// generations only grow) append; an expiry key starts with NotAfter,
		// now + a TTL the caller chooses, so mixed TTLs insert in the middle
		// of the expiry index, which keeps bbolt's default fill.
		recs.FillPercent, byGen.FillPercent = appendFillPercent, appendFillPercent
		// A serial that sorts after the bucket's last key is not recorded:
		// with time-ordered serials (policy.RandomSerial) that is nearly
		// every one, and it saves looking each of them up.
		last, _ := recs.Cursor().Last()
		last = bytes.Clone(last)
		// Concurrent signers queue in any order; putting the group in key
		// order keeps the appends at the right edge of both appended trees,
		// so their split pages stay full.
		slices.SortFunc(group, func(a, b *pendingPut) int { return bytes.Compare(a.key, b.key) })
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
			// The indexes are written in the record's transaction.
			if err := idx.Put(p.expiryKey, p.expiryValue); err != nil {
				return err
			}
			if err := byGen.Put(p.generationKey, nil); err != nil {
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
// arriving, when not nil, ends the record's reservation just before it is
// queued (or fails to be): a commit that waits for reservations must not
// wait for a record that is already in the queue it is draining.
func (g *groupCommitter) put(ctx context.Context, p *pendingPut, arriving func()) error {
	if arriving != nil {
		arriving()
	}
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
