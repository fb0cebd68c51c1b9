package storetest

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/ca/store"
)

// RootCRLStore is a backend of the kept root CRLs.
type RootCRLStore interface {
	store.RootCRLs
	Close() error
}

// keep is KeepRootCRL with a decimal number ("" for none).
func keep(t *testing.T, s store.RootCRLs, issuer, number, der string) string {
	t.Helper()
	return keepCRL(t, s, issuer, number, der, "")
}

// keepCRL is keep of a CRL that replaces the number replaces ("" for none).
func keepCRL(t *testing.T, s store.RootCRLs, issuer, number, der, replaces string) string {
	t.Helper()
	num := func(d string) *big.Int {
		if d == "" {
			return nil
		}
		n, ok := new(big.Int).SetString(d, 10)
		require.True(t, ok)
		return n
	}
	got, err := s.KeepRootCRL(context.Background(), issuer, store.RootCRL{Number: num(number), DER: []byte(der), Replaces: num(replaces)})
	require.NoError(t, err)
	return string(got)
}

// storedRootCRL is GetRootCRL's answer as a string.
func storedRootCRL(t *testing.T, s store.RootCRLs, issuer string) string {
	t.Helper()
	got, err := s.GetRootCRL(context.Background(), issuer)
	require.NoError(t, err)
	return string(got)
}

// RunRootCRLs runs the conformance cases of the kept root CRLs. open
// returns a new, empty store; the suite closes it.
func RunRootCRLs(t *testing.T, open func(t *testing.T) RootCRLStore) {
	run := func(name string, f func(t *testing.T, s RootCRLStore)) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			f(t, s)
		})
	}
	run("RootCRLs/ALowerNumberNeverReplacesAGreater", func(t *testing.T, s RootCRLStore) {
		_, err := s.GetRootCRL(context.Background(), "root-a")
		require.ErrorIs(t, err, store.ErrNotFound)
		require.Equal(t, "crl 5", keep(t, s, "root-a", "5", "crl 5"))
		require.Equal(t, "crl 7", keep(t, s, "root-a", "7", "crl 7"), "a greater number replaces")
		require.Equal(t, "crl 7", keep(t, s, "root-a", "6", "crl 6"), "a lower one does not, and the greater is returned")
		require.Equal(t, "crl 7 again", keep(t, s, "root-a", "7", "crl 7 again"), "the same number replaces (a fresher copy)")
		require.Equal(t, "crl 7 again", keep(t, s, "root-a", "", "no number"), "no number never replaces a numbered CRL")
		require.Equal(t, "crl 7 again", storedRootCRL(t, s, "root-a"))
		// Compared as numbers, not as strings or by length: 256 > 255,
		// 10 > 9, and a 20-octet number (RFC 5280 5.2.3) above all.
		require.Equal(t, "crl 9", keep(t, s, "root-b", "9", "crl 9"))
		require.Equal(t, "crl 10", keep(t, s, "root-b", "10", "crl 10"))
		require.Equal(t, "crl 256", keep(t, s, "root-b", "256", "crl 256"))
		require.Equal(t, "crl 256", keep(t, s, "root-b", "255", "crl 255"))
		max20 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 160), big.NewInt(1)).String()
		require.Equal(t, "crl max", keep(t, s, "root-b", max20, "crl max"))
		require.Equal(t, "crl max", keep(t, s, "root-b", "1", "crl 1"))
		require.Equal(t, "crl 7 again", storedRootCRL(t, s, "root-a"), "each issuer has its own")
		_, err = s.GetRootCRL(context.Background(), "root-c")
		require.ErrorIs(t, err, store.ErrNotFound, "an issuer with no record beside others")
	})
	run("RootCRLs/ARenumberedCRLReplacesOnlyTheNumberItReplaces", func(t *testing.T, s RootCRLStore) {
		require.Equal(t, "crl 500", keep(t, s, "root", "500", "crl 500"))
		require.Equal(t, "crl 500", keep(t, s, "root", "1", "crl 1"))
		require.Equal(t, "crl 500", keepCRL(t, s, "root", "1", "crl 1", "499"), "it replaces another number")
		require.Equal(t, "crl 1", keepCRL(t, s, "root", "1", "crl 1", "500"), "the caller found crl 500 expired and crl 1 valid")
		require.Equal(t, "crl 2", keep(t, s, "root", "2", "crl 2"), "the new numbering from then on")
		require.Equal(t, "crl 2", keep(t, s, "root", "1", "crl 1 again"))
		// A replica that held crl 500 and was served crl 1 late: crl 2,
		// stored since, stays.
		require.Equal(t, "crl 2", keepCRL(t, s, "root", "1", "crl 1 late", "500"))
		require.Equal(t, "crl 2", storedRootCRL(t, s, "root"))
	})
	run("RootCRLs/UnnumberedCRLsReplaceEachOtherUntilANumberedOne", func(t *testing.T, s RootCRLStore) {
		require.Equal(t, "first", keep(t, s, "root", "", "first"))
		require.Equal(t, "second", keep(t, s, "root", "", "second"))
		require.Equal(t, "crl 0", keep(t, s, "root", "0", "crl 0"), "a numbered CRL replaces an unnumbered one")
		require.Equal(t, "crl 0", keep(t, s, "root", "", "third"))
	})
	run("RootCRLs/BadArgumentsAreRefusedAndChangeNothing", func(t *testing.T, s RootCRLStore) {
		ctx := context.Background()
		require.Equal(t, "crl 3", keep(t, s, "root", "3", "crl 3"))
		over := new(big.Int).Lsh(big.NewInt(1), 8*store.RootCRLNumberBytes)
		for name, c := range map[string]struct {
			issuer string
			number *big.Int
			der    []byte
		}{
			"empty issuer":    {"", big.NewInt(9), []byte("x")},
			"long issuer":     {strings.Repeat("a", store.MaxBundleNameLen+1), big.NewInt(9), []byte("x")},
			"issuer with NUL": {"root\x00", big.NewInt(9), []byte("x")},
			"negative number": {"root", big.NewInt(-9), []byte("x")},
			"number too long": {"root", over, []byte("x")},
			"empty CRL":       {"root", big.NewInt(9), nil},
			"CRL too large":   {"root", big.NewInt(9), make([]byte, store.MaxRootCRLBytes+1)},
		} {
			got, err := s.KeepRootCRL(ctx, c.issuer, store.RootCRL{Number: c.number, DER: c.der})
			require.ErrorIs(t, err, store.ErrInvalid, name)
			require.Nil(t, got, name)
		}
		got, err := s.KeepRootCRL(ctx, "root", store.RootCRL{Number: big.NewInt(1), DER: []byte("x"), Replaces: big.NewInt(-3)})
		require.ErrorIs(t, err, store.ErrInvalid, "a negative number replaced")
		require.Nil(t, got)
		_, err = s.GetRootCRL(ctx, "")
		require.ErrorIs(t, err, store.ErrInvalid)
		require.Equal(t, "crl 3", storedRootCRL(t, s, "root"), "the refused calls changed nothing")
	})
}

// RunRootCRLsRestart checks that the CRL kept survives closing and
// reopening the store, and still refuses a lower number after it.
func RunRootCRLsRestart(t *testing.T, open func() RootCRLStore) {
	s := open()
	keep(t, s, "root", "41", "crl 41")
	keep(t, s, "root", "42", "crl 42")
	require.NoError(t, s.Close())
	s = open()
	require.Equal(t, "crl 42", storedRootCRL(t, s, "root"), "after a restart")
	require.Equal(t, "crl 42", keep(t, s, "root", "41", "crl 41"), "a replayed older CRL after a restart")
	require.NoError(t, s.Close())
}

// RunRootCRLsShared runs the case of two replicas on one store: open
// returns two handles on one new, empty shared store. Replicas racing with
// different numbers end with the greatest kept, whatever the order.
func RunRootCRLsShared(t *testing.T, open func(t *testing.T) (a, b RootCRLStore)) {
	t.Run("RootCRLs/RacingReplicasKeepTheGreatest", func(t *testing.T) {
		a, b := open(t)
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		ctx := context.Background()
		var wg sync.WaitGroup
		for i, s := range []RootCRLStore{a, b, a, b} {
			wg.Go(func() {
				for n := 1; n <= 50; n++ {
					v := n*4 + i
					got, err := s.KeepRootCRL(ctx, "root", store.RootCRL{Number: big.NewInt(int64(v)), DER: fmt.Appendf(nil, "crl %d", v)})
					if err != nil {
						t.Error(err)
						return
					}
					var kept int
					if _, err := fmt.Sscanf(string(got), "crl %d", &kept); err != nil || kept < v {
						t.Errorf("keeping CRL %d returned %q: never less than what was kept", v, got)
						return
					}
				}
			})
		}
		wg.Wait()
		require.Equal(t, "crl 203", storedRootCRL(t, a, "root"))
		require.Equal(t, "crl 203", storedRootCRL(t, b, "root"))
	})
}
