package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	// skip: the record is recorded already (or refused); no write.
	skip bool
	// recorded is the record already under key (journal or bbolt), if
	// any; dupOf is the first put of key in the same group, if not p.
	recorded []byte
	dupOf    *pendingPut
}

// groupCommitter makes issuance records durable in groups: a single writer
// commits whatever has queued while the previous commit was on disk. An
// idle store commits a lone record at once (no batching delay). A busy one
// shares each commit among every request that arrived meanwhile and, when
// other records are reserved (being signed right now), waits up to delay
// for them to join, like PostgreSQL's commit_delay with commit_siblings:
// on a CPU-bound replica the records arrive a signing time apart, and
// committing each alone costs a journal write and an fdatasync per record.
// A commit is an append to the journal (journal.go); checkpoints apply the
// journaled records to bbolt.
//
// Many pending records are applied beside the commits: a goroutine applies
// them to bbolt in one transaction (an apply) while new groups are
// appended to the journal, which keeps their frames. Applying a record
// that is already in bbolt changes nothing, so those frames stay safe to
// replay. The journal's regions (journal.go) take turns: when the current
// one is half full and the other's records are in bbolt, the frames move
// to the other, and the next apply raises the store's epoch past the
// first. A busy replica's commits therefore never wait for the page
// writes and syncs of a large transaction, which took several
// milliseconds each time. A few pending records, and a journal left
// idle, are checkpointed in the commit loop: applied with the epoch raised
// and the journal emptied in one transaction.
type groupCommitter struct {
	// update runs the read-write transaction (failClosedWriter.Update),
	// view a read transaction.
	update, view func(func(*bolt.Tx) error) error
	queue        chan *pendingPut
	stopped      chan struct{}
	once         sync.Once
	mu           sync.RWMutex
	closed       bool

	delay time.Duration
	clock clock.Clock
	// reserved counts reservations whose record is not queued yet; poke
	// wakes a waiting commit when one is cancelled.
	reserved atomic.Int64
	poke     chan struct{}

	// The journal (journal.go) and the records in it that no checkpoint
	// has applied to bbolt yet: pending in journal order and, for
	// GetIssuance, by serial. Only run writes them, under omu.
	j        *journal
	omu      sync.RWMutex
	pending  []*pendingPut
	overlay  map[string]*pendingPut
	npending atomic.Int64
	// counts are the journal's metrics; direct: written with direct I/O.
	counts journalCounts
	direct bool
	// lastKey is the greatest serial in bbolt or the journal (or above):
	// a record above it needs no duplicate lookup.
	lastKey []byte
	// applying: an apply of the first applyingN pending records runs,
	// raising the store's journal epoch to applyingEpoch; applied
	// receives its result. durable is the store's journal epoch as
	// committed. Only run reads and writes them.
	applying      bool
	applyingN     int
	applyingEpoch uint64
	applied       chan error
	durable       uint64
	// jobs asks run for a checkpoint (readers that walk bbolt), and then
	// a transaction (a prune's chunk).
	jobs chan loopJob
	// failed is set once a sync of the journal failed; storeErr is the
	// failure of bbolt's writes (failClosedWriter), after which no
	// checkpoint can apply a record.
	failed   atomic.Pointer[error]
	storeErr func() error
}

func newGroupCommitter(w *failClosedWriter, view func(func(*bolt.Tx) error) error,
	j *journal, lastKey []byte, delay time.Duration, clk clock.Clock,
) *groupCommitter {
	g := &groupCommitter{
		update: w.Update, storeErr: w.err, view: view, queue: make(chan *pendingPut, maxGroup), stopped: make(chan struct{}),
		delay: delay, clock: clk, poke: make(chan struct{}, 1),
		j: j, overlay: map[string]*pendingPut{}, lastKey: bytes.Clone(lastKey), jobs: make(chan loopJob),
		applied: make(chan error, 1), durable: j.epoch, direct: j.direct != nil,
	}
	g.counts.write = newJournalWriteSeconds()
	j.clock = clk // the store's clock times the journal's writes too
	go g.run()
	return g
}

func (g *groupCommitter) run() {
	defer close(g.stopped)
	group := make([]*pendingPut, 0, 64)
	var due clock.Timer // the checkpoint of what is pending
	defer func() {
		if due != nil {
			due.Stop()
		}
	}()
	for {
		var dueC <-chan time.Time
		if due != nil {
			dueC = due.C()
		}
		select {
		case first, ok := <-g.queue:
			if !ok {
				g.checkpoint() // on close; what fails stays in the journal
				return
			}
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
		case jb := <-g.jobs:
			err := g.checkpoint()
			if err == nil && jb.fn != nil {
				err = g.update(jb.fn)
			}
			jb.reply <- err
		case <-dueC:
			due = nil
			switch {
			case g.applying:
			case len(g.pending) >= applyMin:
				g.startApply()
			default:
				g.checkpoint() // a few records, or an idle journal
			}
		case err := <-g.applied:
			g.finishApply(err)
			if err != nil {
				// Retried after checkpointAfter, or by the next group.
				if due == nil {
					due = g.clock.NewTimer(checkpointAfter)
				}
				continue
			}
		}
		if g.j.filled() >= g.j.regionSize()/2 && g.j.otherFree(g.durable) {
			g.j.switchRegion()
		}
		if !g.applying && len(g.pending) > 0 &&
			(len(g.pending) >= checkpointRecords || !g.j.otherFree(g.durable)) {
			g.startApply()
		}
		// A checkpoint of what is pending, or of an idle journal's frames
		// (which Open would replay), after checkpointAfter.
		switch wait := !g.applying && (len(g.pending) > 0 || g.j.filled() > 0 || g.j.otherLive); {
		case wait && due == nil:
			due = g.clock.NewTimer(checkpointAfter)
		case !wait && due != nil:
			due.Stop()
			due = nil
		}
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

// err is the reason the store accepts no more records, if any.
func (g *groupCommitter) err() error {
	if e := g.failed.Load(); e != nil {
		return *e
	}
	return g.storeErr()
}

func (g *groupCommitter) fail(err error) error {
	e := fmt.Errorf("%w: %v; check the disk and restart meshca", errJournalFailed, err)
	g.failed.CompareAndSwap(nil, &e)
	return err
}

// commit makes group durable in the journal and returns once the journal
// is synced. A record already recorded (in bbolt or the journal) is a
// no-op if it is the same, and refused (ErrDuplicateSerial) if not.
func (g *groupCommitter) commit(group []*pendingPut) error {
	if err := g.err(); err != nil {
		return err
	}
	// The same group in key order, as a checkpoint will apply it.
	slices.SortFunc(group, func(a, b *pendingPut) int { return bytes.Compare(a.key, b.key) })
	var lookup [][]byte  // serials at or below lastKey, not in the journal
	var head *pendingPut // the first put of the current serial
	for _, p := range group {
		if head != nil && bytes.Equal(p.key, head.key) {
			// Decided below against what head is decided against.
			p.skip, p.dupOf = true, head
			continue
		}
		head = p
		if g.lastKey != nil && bytes.Compare(p.key, g.lastKey) <= 0 {
			if old := g.overlay[string(p.key)]; old != nil {
				p.skip, p.recorded = true, old.value
			} else {
				lookup = append(lookup, p.key)
			}
		}
	}
	if len(lookup) > 0 {
		// Time-ordered serials (policy.RandomSerial) make this rare: a
		// record signed before a record of an earlier group.
		if err := g.view(func(tx *bolt.Tx) error {
			recs := tx.Bucket(bucketIssuances)
			for _, p := range group {
				if p.skip || !slices.ContainsFunc(lookup, func(k []byte) bool { return bytes.Equal(k, p.key) }) {
					continue
				}
				if old := recs.Get(p.key); old != nil {
					p.skip, p.recorded = true, bytes.Clone(old)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	// A put is a no-op if its record is the one recorded, or else the one
	// its group writes under the serial; any other is refused.
	for _, p := range group {
		want := p.recorded
		if h := p.dupOf; h != nil {
			want = h.recorded
			if want == nil {
				want = h.value
			}
		}
		if want != nil && !bytes.Equal(p.value, want) {
			p.refused = ErrDuplicateSerial
		}
	}
	for _, p := range group {
		p.recorded, p.dupOf = nil, nil
	}
	// A group is appended in parts that each fit in the journal, a
	// checkpoint making room before a part when needed.
	for rest := group; len(rest) > 0; {
		part := rest[:g.j.fitting(rest)]
		rest = rest[len(part):]
		if err := g.appendPart(part); err != nil {
			return err
		}
	}
	return nil
}

// appendPart appends part to the journal and keeps its records pending.
func (g *groupCommitter) appendPart(part []*pendingPut) error {
	err := g.j.append(part)
	if errors.Is(err, errJournalFull) {
		// The other region, once an apply has freed it; else a
		// checkpoint empties the journal.
		if !g.j.otherFree(g.durable) {
			g.counts.waits.Add(1)
		}
		if g.applying && !g.j.otherFree(g.durable) {
			g.finishApply(<-g.applied)
		}
		if g.j.otherFree(g.durable) {
			g.j.switchRegion()
		} else if err := g.checkpoint(); err != nil {
			return err
		}
		err = g.j.append(part)
	}
	if errors.Is(err, errFrameTooLarge) {
		return err // nothing was written
	}
	var serr *syncError
	switch {
	case errors.As(err, &serr):
		return g.fail(err)
	case err != nil:
		return err
	}
	g.omu.Lock()
	n := len(g.pending)
	for _, p := range part {
		if p.skip {
			continue
		}
		g.pending = append(g.pending, p)
		g.overlay[string(p.key)] = p
		if bytes.Compare(p.key, g.lastKey) > 0 {
			g.lastKey = p.key
		}
	}
	g.npending.Store(int64(len(g.pending)))
	if added := len(g.pending) - n; added > 0 { // a part of skipped records writes nothing
		g.counts.groups.Add(1)
		g.counts.records.Add(uint64(added))
		g.counts.write.Observe(g.j.took.Seconds())
	}
	g.omu.Unlock()
	return nil
}

// lookup returns the journaled record of key that no checkpoint applied yet.
func (g *groupCommitter) lookup(key []byte) ([]byte, bool) {
	if g.npending.Load() == 0 {
		return nil, false
	}
	g.omu.RLock()
	defer g.omu.RUnlock()
	if p := g.overlay[string(key)]; p != nil {
		return p.value, true
	}
	return nil, false
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
