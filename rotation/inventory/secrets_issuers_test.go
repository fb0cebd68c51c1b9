package inventory_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca/store"
	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/inventory"
)

// countingGenerations counts the store reads.
type countingGenerations struct {
	st    *boltstore.Store
	reads atomic.Int32
}

func (c *countingGenerations) ListGenerations(ctx context.Context) ([]store.Generation, error) {
	c.reads.Add(1)
	return c.st.ListGenerations(ctx)
}

// TestIntermediates_InForceAndReadOncePerGeneration: the Secret scan's
// issuers are meshca's published intermediates (never the root), read
// from the store once however many Secrets arrive, and again when the
// active generation changes.
func TestIntermediates_InForceAndReadOncePerGeneration(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root := newCA(t, "Test Root", 1, day0, day0.AddDate(10, 0, 0), nil)
	a := newCA(t, "gen A", 0x0a, day0, day0.AddDate(1, 0, 0), root)
	b := newCA(t, "gen B", 0x0b, day0, day0.AddDate(1, 0, 0), root)
	for i, g := range []*testCA{a, b} {
		rec, err := st.AddGeneration(ctx, store.Generation{CertDER: g.cert.Raw, ChainDER: [][]byte{root.cert.Raw}, Source: "file-minted"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := st.ActivateGeneration(ctx, rec.ID, day0); err != nil {
				t.Fatal(err)
			}
		}
	}
	var active atomic.Uint64
	active.Store(1)
	gens := &countingGenerations{st: st}
	issuers := inventory.Intermediates(&inventory.CASource{
		Roots:       func() []*x509.Certificate { return []*x509.Certificate{root.cert} },
		Active:      active.Load,
		Generations: gens,
		Grace:       24 * time.Hour,
		Clock:       clocktesting.NewFakePassiveClock(day0.AddDate(0, 0, 1)),
	})
	names := func() []string {
		var out []string
		for _, c := range issuers() {
			out = append(out, c.Subject.CommonName)
		}
		return out
	}
	for range 100 {
		if got := names(); len(got) != 1 || got[0] != "gen A" {
			t.Fatalf("issuers %q, want [gen A]", got)
		}
	}
	if n := gens.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for 100 Secrets, want 1", n)
	}
	if err := st.ActivateGeneration(ctx, 2, day0.AddDate(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	active.Store(2)
	if got := names(); len(got) != 2 {
		t.Fatalf("issuers %q after activating B, want A (retired, in grace) and B", got)
	}
	if n := gens.reads.Load(); n != 2 {
		t.Fatalf("%d store reads, want 2", n)
	}
}
