package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPerRoundRatios_PairTheRunsOfEachRound(t *testing.T) {
	run := func(target string, c, round int, ok int64, serverCPU, loadgenCPU float64) peerRun {
		return peerRun{target: target, concurrency: c, round: round, cpuSeconds: serverCPU, loadgenCPU: loadgenCPU,
			res: loadgenResult{OK: ok, TotalOK: ok, Seconds: 1}}
	}
	runs := []peerRun{
		// round 0 at c=16: meshca 1200/s, istiod 1000/s
		run("meshca classical", 16, 0, 1200, 0.3, 0.1), run("istiod", 16, 0, 1000, 0.4, 0.1),
		// round 1 in a slower spell: meshca 550/s, istiod 500/s
		run("meshca classical", 16, 1, 550, 0.2, 0.05), run("istiod", 16, 1, 500, 0.25, 0.05),
		// another concurrency is not mixed in
		run("meshca classical", 64, 0, 9000, 1, 1), run("istiod", 64, 0, 1, 1, 1),
	}
	require.Equal(t, "1.20x 1.10x", roundRatios(runs, "meshca classical", 16))
	// CPU per 1000: round 0 meshca 0.25+0.0833, istiod 0.4+0.1; round 1
	// meshca 0.3636+0.0909, istiod 0.5+0.1.
	require.Equal(t, "1.50x 1.32x", cpuRatios(runs, "meshca classical", 16))
	require.Equal(t, "", roundRatios(runs, "meshca catalyst", 16), "a target without runs has no ratios")
}

func TestParsePerfStat_ReadsBothCountsAndRefusesWhatIsNotACount(t *testing.T) {
	// perf stat -x , as perf 6.1 writes it.
	out := []byte("# started on Sun Dec  6 17:35:01 2026\n\n161376,,raw_syscalls:sys_enter,6006873038,100.00,,\n62997,,context-switches,6006881003,100.00,,\n")
	sc, cs, err := parsePerfStat(out)
	require.NoError(t, err)
	require.Equal(t, 161376.0, sc)
	require.Equal(t, 62997.0, cs)

	_, _, err = parsePerfStat([]byte("<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n62997,,context-switches,6006881003,100.00,,\n"))
	require.ErrorContains(t, err, `raw_syscalls:sys_enter: "<not supported>" is not a count`)
	_, _, err = parsePerfStat([]byte("62997,,context-switches,6006881003,100.00,,\n"))
	require.ErrorContains(t, err, "no raw_syscalls:sys_enter or context-switches count")
}

func TestSyscallLines_MedianPerCertificateOfEachTarget(t *testing.T) {
	run := func(target string, c int, total int64, syscalls, switches float64) peerRun {
		return peerRun{target: target, concurrency: c, syscalls: syscalls, switches: switches, res: loadgenResult{TotalOK: total}}
	}
	targets := []*peerTarget{{name: "meshca classical"}, {name: "istiod"}}
	runs := []peerRun{
		run("meshca classical", 16, 1000, 5000, 2000), run("meshca classical", 16, 1000, 6000, 3000), run("meshca classical", 16, 2000, 14000, 2000),
		run("istiod", 16, 1000, 2500, 1700),
		run("istiod", 64, 1000, -1, -1), // not counted
	}
	require.Equal(t, []string{
		"c=16: system calls / context switches per certificate in the server (perf stat): meshca classical 6.0 / 2.0, istiod 2.5 / 1.7",
	}, syscallLines(runs, []int{16, 64}, targets))
	require.Empty(t, syscallLines(runs[4:], []int{64}, targets))
}
