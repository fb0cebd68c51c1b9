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
