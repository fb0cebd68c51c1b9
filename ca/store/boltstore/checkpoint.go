package boltstore

import (
	"bytes"
	"context"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The journaled records are applied to bbolt once checkpointRecords of
// them are pending, checkpointAfter after the first of them was
// acknowledged, or when the frames move to the other half of the journal
// (its records must be in bbolt before it is used again). Fewer than
// applyMin pending records are applied in the commit loop, with the
// journal emptied in the same transaction; more by an apply beside it
// (variables for the tests).
var (
	checkpointRecords = 1024
	checkpointAfter   = 200 * time.Millisecond
	applyMin          = 64
)

// startApply applies the pending records to bbolt in a goroutine, in one
// transaction that also raises the store's journal epoch to the current
// region's: every frame of a lower epoch is then in bbolt. The frames stay
// in the journal, and replaying them changes nothing. The result goes to
// applied; run passes it to finishApply.
func (g *groupCommitter) startApply() {
	if g.storeErr() != nil {
		return // the records stay pending, and in the journal
	}
	recs := slices.SortedFunc(slices.Values(g.pending), func(a, b *pendingPut) int { return bytes.Compare(a.key, b.key) })
	epoch, raise := g.j.epoch, g.j.epoch > g.durable
	g.applying, g.applyingN, g.applyingEpoch = true, len(g.pending), epoch
	go func() {
		g.applied <- g.update(func(tx *bolt.Tx) error {
			if err := applyRecords(tx, recs); err != nil || !raise {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keyJournalEpoch, u64(epoch))
		})
	}()
}

// finishApply takes the result of the apply that ran: on success its
// records are in bbolt and leave the overlay; on failure they stay
// pending for the next checkpoint.
func (g *groupCommitter) finishApply(err error) {
	n := g.applyingN
	g.applying, g.applyingN = false, 0
	if err != nil {
		return
	}
	g.durable = max(g.durable, g.applyingEpoch)
	g.counts.applies.Add(1)
	g.omu.Lock()
	for _, p := range g.pending[:n] {
		if g.overlay[string(p.key)] == p {
			delete(g.overlay, string(p.key))
		}
	}
	rest := copy(g.pending, g.pending[n:])
	clear(g.pending[rest:])
	g.pending = g.pending[:rest]
	g.npending.Store(int64(rest))
	g.omu.Unlock()
}

// checkpoint waits for a running apply, applies the records still
// pending to bbolt in one transaction, which also raises the journal's
// epoch, and empties the journal. A failed checkpoint keeps them pending
// (and in the journal) for the next.
func (g *groupCommitter) checkpoint() error {
	if g.applying {
		g.finishApply(<-g.applied)
	}
	if len(g.pending) == 0 && g.j.off == 0 && !g.j.otherLive {
		return nil
	}
	// After a failed write of the journal the records acknowledged before
	// it are still in it, synced: bbolt takes them all the same.
	if err := g.storeErr(); err != nil {
		return err
	}
	next := g.j.epoch + 1
	// The journal's order is per group; bbolt appends best in key order.
	recs := slices.SortedFunc(slices.Values(g.pending), func(a, b *pendingPut) int { return bytes.Compare(a.key, b.key) })
	err := g.update(func(tx *bolt.Tx) error {
		if err := applyRecords(tx, recs); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyJournalEpoch, u64(next))
	})
	if err != nil {
		return err
	}
	g.omu.Lock()
	clear(g.pending)
	g.pending = g.pending[:0]
	clear(g.overlay)
	g.npending.Store(0)
	g.omu.Unlock()
	g.j.reset(next)
	g.durable = next
	g.counts.checkpoints.Add(1)
	return nil
}

// applyRecords writes recs, in key order, to bbolt's issuance buckets.
// A record already there is skipped (Open replays a journal whose
// checkpoint a crash interrupted after its commit); a different record
// under its serial is left as it is and refused.
func applyRecords(tx *bolt.Tx, recs []*pendingPut) error {
	b, idx := tx.Bucket(bucketIssuances), tx.Bucket(bucketExpiry)
	byGen := tx.Bucket(bucketByGeneration)
	// The serial bucket and the generation index (generation || serial;
	// generations only grow) append; an expiry key starts with NotAfter,
	// now + a TTL the caller chooses, so mixed TTLs insert in the middle
	// of the expiry index, which keeps bbolt's default fill.
	b.FillPercent, byGen.FillPercent = appendFillPercent, appendFillPercent
	// A serial that sorts after the bucket's last key is not recorded:
	// with time-ordered serials (policy.RandomSerial) that is nearly
	// every one, and it saves looking each of them up.
	last, _ := b.Cursor().Last()
	last = bytes.Clone(last)
	for _, p := range recs {
		if last != nil && bytes.Compare(p.key, last) <= 0 {
			if old := b.Get(p.key); old != nil {
				if !bytes.Equal(old, p.value) {
					p.refused = ErrDuplicateSerial
				}
				continue
			}
		}
		if err := b.Put(p.key, p.value); err != nil {
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
}

// loopJob asks run for a checkpoint and then, when fn is set, a
// transaction; reply gets the result.
type loopJob struct {
	fn    func(*bolt.Tx) error
	reply chan error
}

// onLoop runs a loopJob of fn on the commit loop and waits for it; once
// the loop has stopped it returns stopped. A job whose ctx ends after it
// was taken still runs.
func (g *groupCommitter) onLoop(ctx context.Context, fn func(*bolt.Tx) error, stopped error) error {
	reply := make(chan error, 1)
	select {
	case g.jobs <- loopJob{fn, reply}:
	case <-g.stopped:
		return stopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteRecords runs fn, a transaction that deletes issuance records, on
// the commit loop right after a checkpoint that empties the journal:
// a frame left in the journal would bring its record back at the next
// Open after an unclean stop, and no commit or apply can come between
// the two. The commits wait for both; a prune deletes in chunks.
func (g *groupCommitter) deleteRecords(ctx context.Context, fn func(*bolt.Tx) error) error {
	return g.onLoop(ctx, fn, errClosed)
}

// flush applies the journaled records to bbolt now, for a reader that
// walks bbolt's buckets.
func (g *groupCommitter) flush(ctx context.Context) error {
	if g.npending.Load() == 0 {
		return nil
	}
	// After Close: it checkpointed, or left the records in the journal.
	return g.onLoop(ctx, nil, nil)
}
