package main

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSetServeGC_DefaultsTo400UnlessGOGCIsSet(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Run("GOGC unset", func(t *testing.T) {
		debug.SetGCPercent(100)
		t.Setenv("GOGC", "") // registers the restore; then unset it
		unsetenv(t, "GOGC")
		setServeGC()
		require.Equal(t, serveGCPercent, debug.SetGCPercent(100))
	})
	t.Run("GOGC set by the operator", func(t *testing.T) {
		debug.SetGCPercent(150) // what the runtime took from GOGC=150
		t.Setenv("GOGC", "150")
		setServeGC()
		require.Equal(t, 150, debug.SetGCPercent(100))
	})
}

func unsetenv(t *testing.T, k string) {
	t.Helper()
	require.NoError(t, os.Unsetenv(k))
}
