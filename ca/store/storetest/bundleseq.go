package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// BundleSequenceStore is a backend of the SPIFFE bundle sequences.
type BundleSequenceStore interface {
	store.BundleSequences
	Close() error
}

// digestOf is the SHA-256 of s, a stand-in for a bundle's content.
func digestOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// RunBundleSequences runs the conformance cases of the bundle sequences.
// open returns a new, empty store; the suite closes it.
func RunBundleSequences(t *testing.T, open func(t *testing.T) BundleSequenceStore) {
	run := func(name string, f func(t *testing.T, s BundleSequenceStore)) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			f(t, s)
		})
	}
	run("BundleSequences/SameContentSameNumberChangedContentHigher", func(t *testing.T, s BundleSequenceStore) {
		ctx := context.Background()
		seq := func(name, content string) uint64 {
			t.Helper()
			n, err := s.BundleSequence(ctx, name, digestOf(content), []byte(content))
			require.NoError(t, err)
			return n
		}
		require.Equal(t, uint64(1), seq("cluster.local", "A"), "the first content")
		require.Equal(t, uint64(1), seq("cluster.local", "A"), "the same content again")
		require.Equal(t, uint64(2), seq("cluster.local", "A+B"), "a root rotation adds B")
		require.Equal(t, uint64(2), seq("cluster.local", "A+B"))
		require.Equal(t, uint64(3), seq("cluster.local", "B"), "A removed")
		require.Equal(t, uint64(4), seq("cluster.local", "A"), "an earlier content back is a change too: never a number from before")
		require.Equal(t, uint64(1), seq("example.org", "A"), "each bundle name has its own sequence")
		require.Equal(t, uint64(4), seq("cluster.local", "A"))

		rec, err := s.GetBundle(ctx, "cluster.local")
		require.NoError(t, err)
		require.Equal(t, store.BundleRecord{Sequence: 4, Digest: digestOf("A"), Content: []byte("A")}, rec)
		n, err := s.BundleSequence(ctx, "cluster.local", digestOf("A"), []byte("other bytes"))
		require.NoError(t, err)
		require.Equal(t, uint64(4), n)
		rec, err = s.GetBundle(ctx, "cluster.local")
		require.NoError(t, err)
		require.Equal(t, []byte("A"), rec.Content, "the same digest does not write the content again")
		_, err = s.GetBundle(ctx, "unknown.example")
		require.ErrorIs(t, err, store.ErrNotFound)
	})
	run("BundleSequences/BadNameIsRefusedAndChangesNothing", func(t *testing.T, s BundleSequenceStore) {
		ctx := context.Background()
		n, err := s.BundleSequence(ctx, "cluster.local", digestOf("A"), []byte("A"))
		require.NoError(t, err)
		require.Equal(t, uint64(1), n)
		for _, name := range []string{"", strings.Repeat("a", store.MaxBundleNameLen+1), "cluster local", "td\x00", "td\n"} {
			n, err := s.BundleSequence(ctx, name, digestOf("B"), []byte("B"))
			require.ErrorIs(t, err, store.ErrInvalid, "%q", name)
			require.Zero(t, n)
		}
		n, err = s.BundleSequence(ctx, "cluster.local", digestOf("big"), make([]byte, store.MaxBundleContentBytes+1))
		require.ErrorIs(t, err, store.ErrInvalid, "an oversized content")
		require.Zero(t, n)
		_, err = s.GetBundle(ctx, "")
		require.ErrorIs(t, err, store.ErrInvalid)
		n, err = s.BundleSequence(ctx, strings.Repeat("a", store.MaxBundleNameLen), digestOf("B"), []byte("B"))
		require.NoError(t, err)
		require.Equal(t, uint64(1), n)
		n, err = s.BundleSequence(ctx, "cluster.local", digestOf("A"), []byte("A"))
		require.NoError(t, err)
		require.Equal(t, uint64(1), n, "the refused calls changed nothing")
	})
	run("BundleSequences/ConcurrentCallersWithOneContentAgree", func(t *testing.T, s BundleSequenceStore) {
		testBundleSequencesConcurrent(t, s, s)
	})
}

// RunBundleSequencesRestart checks that a number survives closing and
// reopening the store: the same content keeps it, a new content gets a
// higher one.
func RunBundleSequencesRestart(t *testing.T, open func() BundleSequenceStore) {
	ctx := context.Background()
	s := open()
	for _, c := range []string{"A", "A+B", "B"} {
		_, err := s.BundleSequence(ctx, "cluster.local", digestOf(c), []byte(c))
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	s = open()
	n, err := s.BundleSequence(ctx, "cluster.local", digestOf("B"), []byte("B"))
	require.NoError(t, err)
	require.Equal(t, uint64(3), n, "the same content after a restart")
	n, err = s.BundleSequence(ctx, "cluster.local", digestOf("B+C"), []byte("B+C"))
	require.NoError(t, err)
	require.Equal(t, uint64(4), n, "a new content after a restart")
	require.NoError(t, s.Close())
	s = open()
	rec, err := s.GetBundle(ctx, "cluster.local")
	require.NoError(t, err)
	require.Equal(t, store.BundleRecord{Sequence: 4, Digest: digestOf("B+C"), Content: []byte("B+C")}, rec, "the content survives a restart")
	require.NoError(t, s.Close())
}

// RunBundleSequencesShared runs the cases of two replicas on one store:
// open returns two handles on one new, empty shared store.
func RunBundleSequencesShared(t *testing.T, open func(t *testing.T) (a, b BundleSequenceStore)) {
	t.Run("BundleSequences/TwoReplicasAgreeAndNeverGoBack", func(t *testing.T) {
		a, b := open(t)
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		ctx := context.Background()
		na, err := a.BundleSequence(ctx, "cluster.local", digestOf("A"), []byte("A"))
		require.NoError(t, err)
		nb, err := b.BundleSequence(ctx, "cluster.local", digestOf("A"), []byte("A"))
		require.NoError(t, err)
		require.Equal(t, uint64(1), na)
		require.Equal(t, na, nb, "two replicas serving the same content agree")
		nb, err = b.BundleSequence(ctx, "cluster.local", digestOf("A+B"), []byte("A+B"))
		require.NoError(t, err)
		na, err = a.BundleSequence(ctx, "cluster.local", digestOf("A+B"), []byte("A+B"))
		require.NoError(t, err)
		require.Equal(t, uint64(2), nb)
		require.Equal(t, nb, na, "replica A learns replica B's number for the new content")
		rec, err := a.GetBundle(ctx, "cluster.local")
		require.NoError(t, err)
		require.Equal(t, store.BundleRecord{Sequence: 2, Digest: digestOf("A+B"), Content: []byte("A+B")}, rec, "replica A reads what replica B numbered")
		testBundleSequencesConcurrent(t, a, b)
	})
}

// testBundleSequencesConcurrent has callers on a and b ask for the number
// of one new content at once, round after round: all of them get the same
// number, one higher than the round before.
func testBundleSequencesConcurrent(t *testing.T, a, b store.BundleSequences) {
	ctx := context.Background()
	last, err := a.BundleSequence(ctx, "concurrent.example", digestOf("round 0"), []byte("round 0"))
	require.NoError(t, err)
	for round := 1; round <= 10; round++ {
		const callers = 8
		got := make([]uint64, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range callers {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				<-start
				content := fmt.Sprintf("round %d", round)
				got[i], errs[i] = s.BundleSequence(ctx, "concurrent.example", digestOf(content), []byte(content))
			})
		}
		close(start)
		wg.Wait()
		for i := range callers {
			require.NoError(t, errs[i], "round %d caller %d", round, i)
			require.Equal(t, last+1, got[i], "round %d caller %d", round, i)
		}
		last++
	}
}
