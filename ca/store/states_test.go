package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A prepared generation is abandoned once a newer generation of its own
// lineage was activated; another lineage's activations do not count, and
// a generation prepared after the last activation is still prepared.
func TestStates_PreparedBeforeANewerActivationIsAbandoned(t *testing.T) {
	at := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	gens := []Generation{
		{ID: 1, ActivatedAt: at, RetiredAt: at.Add(time.Hour)},
		{ID: 2},                                 // lost the Lease while prepared
		{ID: 3, Signer: "alpha"},                // alpha's, abandoned by alpha's activation of 5
		{ID: 4, ActivatedAt: at.Add(time.Hour)}, // the default's active one
		{ID: 5, Signer: "alpha", ActivatedAt: at},
		{ID: 6}, // the default's successor, waiting for activation
		{ID: 7, Signer: "alpha"},
	}
	require.Equal(t, map[uint64]GenerationState{
		1: StateRetired, 2: StateAbandoned, 3: StateAbandoned, 4: StateActive, 5: StateActive, 6: StatePrepared, 7: StatePrepared,
	}, States(gens))
	require.Equal(t, map[uint64]GenerationState{}, States(nil))

	// One certificate recorded twice (a pre-issued intermediate whose
	// first record a lost Lease left prepared): in use, never abandoned.
	dup := []Generation{
		{ID: 1, CertDER: []byte("pre-issued")},
		{ID: 2, CertDER: []byte("pre-issued"), ActivatedAt: at},
	}
	require.Equal(t, map[uint64]GenerationState{1: StatePrepared, 2: StateActive}, States(dup))
}
