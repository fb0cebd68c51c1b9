package crl

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/meshca/meshca/ca/store"
)

// The in-memory revoked set: what IsRevoked answers from, and how a
// revocation (this replica's, another's read by Follow, or one found on a
// reload) schedules the rebuild of the CRLs that list it.

// twinGenerations are the other records of the certificates that recs'
// intermediate revocations revoke. A pre-issued intermediate recorded
// twice (its first record left prepared) is one certificate, revoked once
// under the first record's generation; the leaves of either record are
// revoked with it (RFC 5280 section 6.3: the chain's CRLs reject them).
func (m *Manager) twinGenerations(ctx context.Context, recs []store.Revocation) ([]uint64, error) {
	want := map[uint64]bool{}
	for _, r := range recs {
		if r.Kind == store.KindIntermediate {
			want[r.Generation] = true
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	gens, err := m.opts.Store.ListGenerations(ctx)
	if err != nil {
		return nil, err
	}
	var revoked [][]byte
	for _, g := range gens {
		if want[g.ID] {
			revoked = append(revoked, g.CertDER)
		}
	}
	var out []uint64
	for _, g := range gens {
		if want[g.ID] {
			continue
		}
		for _, der := range revoked {
			if bytes.Equal(g.CertDER, der) {
				out = append(out, g.ID)
				break
			}
		}
	}
	return out, nil
}

// noteTwins adds the twin generations of recs (twinGenerations) to the
// revoked set that IsRevoked answers from.
func (m *Manager) noteTwins(ctx context.Context, recs []store.Revocation) {
	twins, err := m.twinGenerations(ctx, recs)
	if err != nil {
		m.log.Warn("reading the CA generations to find other records of a revoked intermediate failed; leaves of such a record are taken as revoked from the next reload", "error", err)
		return
	}
	if len(twins) == 0 {
		return
	}
	m.mu.Lock()
	for _, id := range twins {
		m.revokedGens[id] = true
	}
	m.mu.Unlock()
}

// schedule adds recs to the in-memory revoked set and schedules a
// coalesced rebuild of the CRLs that list them; count: they are this
// replica's revocations (meshca_crl_revocations_total). A repeated
// revocation (store.Revocation.Existing) that this manager already knows
// changes no CRL: it is not counted again and starts no rebuild, so the
// CRL number moves only when a CRL's content does. Nor does a record this
// manager already holds under the same Seq: whoever added it scheduled
// it (Follow can read this replica's own revocation between its commit
// and Revoke's scheduling), or it was loaded before Start's rebuild.
func (m *Manager) schedule(recs []store.Revocation, count bool) {
	m.mu.Lock()
	due := m.scheduleLocked(recs, count)
	m.mu.Unlock()
	if due {
		m.kickRun()
	}
}

// scheduleLocked is schedule with m.mu held, for callers that must add
// records in the same critical section in which they read them (Follow,
// loadRevoked): a record in the set under its Seq counts as scheduled.
// It reports whether a rebuild is due (kickRun, after unlocking).
func (m *Manager) scheduleLocked(recs []store.Revocation, count bool) bool {
	changed := false
	for _, r := range recs {
		if count && !r.Existing {
			m.metrics.revocations.WithLabelValues(reasonLabel(r.Reason)).Inc()
		}
		b, err := SerialBytes(r.Serial)
		seq, known := m.revoked[string(b)]
		if err == nil && known && (r.Existing || seq == r.Seq) {
			continue
		}
		m.noteLocked(r)
		for _, s := range m.scopesOfLocked(r) {
			m.dirty[s] = true
		}
		changed = true
	}
	if changed && m.pendingSince.IsZero() {
		m.pendingSince = m.clk.Now()
	}
	return changed
}

// kickRun wakes Run to rebuild what schedule marked dirty.
func (m *Manager) kickRun() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// IsRevoked reports whether serial (lower-case hex) is revoked, or was
// issued by a revoked generation. It answers from memory; only when some
// generation is revoked does it read the serial's issuance record to learn
// its generation. It implements issuer/authn.RevocationChecker.
func (m *Manager) IsRevoked(ctx context.Context, serial string) (bool, error) {
	b, err := SerialBytes(serial)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	_, hit := m.revoked[string(b)]
	anyGen := len(m.revokedGens) > 0
	m.mu.Unlock()
	if hit || !anyGen {
		return hit, nil
	}
	is, err := m.opts.Store.GetIssuance(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revokedGens[is.Generation], nil
}

// loadRevoked (re)reads the revoked set from the store. Revocations that
// Revoke added meanwhile (a higher Seq than the listing saw) stay.
func (m *Manager) loadRevoked(ctx context.Context) error {
	set, gens := map[string]uint64{}, map[uint64]bool{}
	var top uint64
	m.mu.Lock()
	followed, reload := m.followSeq, m.loaded
	m.mu.Unlock()
	// Kept whole only: the intermediates (few), and on a reload the
	// records after what was followed (the set may hold a million).
	var inters, after []store.Revocation
	err := m.opts.Store.ListRevocations(ctx, 0, func(r store.Revocation) bool {
		if b, err := SerialBytes(r.Serial); err == nil {
			set[string(b)] = r.Seq
		}
		if r.Kind == store.KindIntermediate {
			gens[r.Generation] = true
			inters = append(inters, r)
		}
		if reload && r.Seq > followed {
			after = append(after, r)
		}
		top = max(top, r.Seq)
		return true
	})
	if err != nil {
		return fmt.Errorf("read revocations: %w", err)
	}
	m.mu.Lock()
	// Records this manager did not know, after the first load: another
	// replica's revocations committed since Follow last read (the reload
	// after a prune runs between a rebuild and the next Follow). They are
	// scheduled as Follow would, not just added to the set, which Follow
	// would then take as already built; in this critical section, which
	// also raises followSeq past them. They are left out of the new set
	// for scheduleLocked to add: a record already in it under its Seq
	// counts as scheduled.
	var fresh []store.Revocation
	for _, r := range after {
		b, err := SerialBytes(r.Serial)
		if _, known := m.revoked[string(b)]; err == nil && !known {
			fresh = append(fresh, r)
			delete(set, string(b))
		}
	}
	for k, seq := range m.revoked {
		if seq > top {
			set[k] = seq
		}
	}
	for g := range m.revokedGens {
		gens[g] = true // generations are never pruned while meshca runs
	}
	m.revoked, m.revokedGens = set, gens
	m.followSeq, m.loaded = max(m.followSeq, top), true
	due := m.scheduleLocked(fresh, false)
	m.mu.Unlock()
	if due {
		m.kickRun()
	}
	if len(inters) > 0 {
		m.noteTwins(ctx, inters)
	}
	return nil
}

// noteLocked adds r to the in-memory revoked set.
func (m *Manager) noteLocked(r store.Revocation) {
	if b, err := SerialBytes(r.Serial); err == nil {
		m.revoked[string(b)] = r.Seq
	}
	if r.Kind == store.KindIntermediate {
		m.revokedGens[r.Generation] = true
	}
}

// scopesOfLocked are the scopes whose CRLs may list r: its generation's
// for a leaf; for an intermediate, every root's meshca builds (the
// rebuild lists it on its issuer's alone).
func (m *Manager) scopesOfLocked(r store.Revocation) []string {
	if r.Kind != store.KindLeaf {
		return m.rootScopesLocked()
	}
	if s := ScopeGeneration(r.Generation); m.scopes[s] != nil {
		return []string{s}
	}
	return nil
}
