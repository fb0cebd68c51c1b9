package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSetServeRuntime_DefaultsTo400UnlessGOGCIsSet(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Setenv("GOMAXPROCS", "2") // this test is about the GC; the next one about Ps
	t.Run("GOGC unset", func(t *testing.T) {
		debug.SetGCPercent(100)
		t.Setenv("GOGC", "") // registers the restore; then unset it
		unsetenv(t, "GOGC")
		setServeRuntime()
		require.Equal(t, serveGCPercent, debug.SetGCPercent(100))
	})
	t.Run("GOGC set by the operator", func(t *testing.T) {
		debug.SetGCPercent(150) // what the runtime took from GOGC=150
		t.Setenv("GOGC", "150")
		setServeRuntime()
		require.Equal(t, 150, debug.SetGCPercent(100))
	})
}

func unsetenv(t *testing.T, k string) {
	t.Helper()
	require.NoError(t, os.Unsetenv(k))
}

func TestContainerMemoryLimit_ReadsCgroupV2ThenV1AndIgnoresNoLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	v2max := write("v2-max", "max\n")
	v2 := write("v2", "536870912\n")
	v1none := write("v1-none", "9223372036854771712\n") // cgroup v1 without a limit
	v1 := write("v1", "268435456\n")
	missing := filepath.Join(dir, "missing")

	limit, ok := containerMemoryLimit([]string{v2, v1})
	require.True(t, ok)
	require.EqualValues(t, 512<<20, limit)

	limit, ok = containerMemoryLimit([]string{missing, v2max, v1})
	require.True(t, ok)
	require.EqualValues(t, 256<<20, limit)

	_, ok = containerMemoryLimit([]string{v2max, v1none, missing})
	require.False(t, ok)
}

func TestSetServeRuntime_SoftMemoryLimitFromTheContainerUnlessGOMEMLIMITIsSet(t *testing.T) {
	prevFiles, prevLimit := cgroupMemoryFiles, debug.SetMemoryLimit(-1)
	t.Cleanup(func() { cgroupMemoryFiles = prevFiles; debug.SetMemoryLimit(prevLimit) })
	f := filepath.Join(t.TempDir(), "memory.max")
	require.NoError(t, os.WriteFile(f, []byte("1000000000\n"), 0o600))
	cgroupMemoryFiles = []string{f}
	t.Setenv("GOGC", "100")
	t.Setenv("GOMAXPROCS", "2")

	t.Setenv("GOMEMLIMIT", "")
	unsetenv(t, "GOMEMLIMIT")
	debug.SetMemoryLimit(math.MaxInt64)
	setServeRuntime()
	require.EqualValues(t, 900000000, debug.SetMemoryLimit(-1))

	t.Setenv("GOMEMLIMIT", "2GiB")
	debug.SetMemoryLimit(math.MaxInt64) // what the runtime would have taken from it is not ours to change
	setServeRuntime()
	require.EqualValues(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1))
}

func TestSetServeRuntime_MorePsThanTheDefaultUnlessGOMAXPROCSIsSet(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "1GiB")

	t.Setenv("GOMAXPROCS", "")
	unsetenv(t, "GOMAXPROCS")
	runtime.GOMAXPROCS(runtime.NumCPU()) // the default without a CPU limit
	setServeRuntime()
	require.Equal(t, runtime.NumCPU()+4, runtime.GOMAXPROCS(0))

	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2) // what the runtime took from GOMAXPROCS=2
	setServeRuntime()
	require.Equal(t, 2, runtime.GOMAXPROCS(0))
}

func TestServeProcs(t *testing.T) {
	for _, tc := range []struct{ def, cpus, want int }{
		{def: 2, cpus: 2, want: 6},    // the whole machine: 4 spare Ps
		{def: 1, cpus: 1, want: 5},    // one core
		{def: 16, cpus: 16, want: 20}, // a large node
		{def: 2, cpus: 16, want: 3},   // a CPU limit of 2 on 16 cores: one more only
		{def: 1, cpus: 8, want: 2},    // a limit of 1 (or less, rounded up)
	} {
		require.Equal(t, tc.want, serveProcs(tc.def, tc.cpus), "default %d of %d CPUs", tc.def, tc.cpus)
	}
}
