package inventory_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshca/meshca/ca/store/boltstore"
	"github.com/meshca/meshca/rotation/inventory"
)

const storeHealthHeader = `
# HELP meshca_store_healthy 1 while the record store accepts writes; 0 once it has failed closed (restart meshca after checking the disk).
# TYPE meshca_store_healthy gauge
`

// TestStoreHealth_FollowsHealthy: a fresh bolt store is healthy (1); a
// store that reports a failure is 0. (A real fail-closed bolt store needs
// a failed fdatasync of the meta page, which test/durability injects.)
func TestStoreHealth_FollowsHealthy(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "meshca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := testutil.CollectAndCompare(inventory.NewStoreHealth(st.Healthy), strings.NewReader(storeHealthHeader+"meshca_store_healthy 1\n")); err != nil {
		t.Fatal(err)
	}
	failed := func() error { return errors.New("store: a commit failed") }
	if err := testutil.CollectAndCompare(inventory.NewStoreHealth(failed), strings.NewReader(storeHealthHeader+"meshca_store_healthy 0\n")); err != nil {
		t.Fatal(err)
	}
}
