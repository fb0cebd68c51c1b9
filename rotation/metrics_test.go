package rotation_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/meshca/meshca/rotation"
)

type fixed rotation.Status

func (f *fixed) RotationStatus() rotation.Status { return rotation.Status(*f) }

// Each controller registers its own Reporter on the same registry; the
// last-success gauge is absent until a step has succeeded.
func TestRegisterMetrics_EachControllerRegistersItself(t *testing.T) {
	reg := prometheus.NewRegistry()
	inter := &fixed{CA: rotation.CAIntermediate, Phase: "prepared", PhaseCode: 2, LastSuccess: time.Unix(1700000000, 500000000)}
	rootCtl := &fixed{CA: rotation.CARoot, Phase: "idle"}
	require.NoError(t, rotation.RegisterMetrics(reg, inter))
	require.NoError(t, rotation.RegisterMetrics(reg, rootCtl))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meshca_rotation_last_success_timestamp_seconds Unix time when the controller's last rotation step completed; absent until one has.
# TYPE meshca_rotation_last_success_timestamp_seconds gauge
meshca_rotation_last_success_timestamp_seconds{ca="intermediate"} 1.7000000005e+09
# HELP meshca_rotation_phase Phase of a rotating CA controller (ca is intermediate or root); 0 means no rotation in progress. Each controller documents its codes (rotation/README.md).
# TYPE meshca_rotation_phase gauge
meshca_rotation_phase{ca="intermediate"} 2
meshca_rotation_phase{ca="root"} 0
`), "meshca_rotation_phase", "meshca_rotation_last_success_timestamp_seconds"))
	rootCtl.PhaseCode, rootCtl.LastSuccess = 3, time.Unix(1700000100, 0)
	n, err := testutil.GatherAndCount(reg, "meshca_rotation_last_success_timestamp_seconds")
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// meshca_rotation_stuck and meshca_rotation_paused are 1 exactly while the
// controller's Status says so, 0 otherwise, and follow it from one scrape
// to the next.
func TestCollector_StuckAndPaused(t *testing.T) {
	reg := prometheus.NewRegistry()
	inter := &fixed{CA: rotation.CAIntermediate, Phase: "preparing", PhaseCode: 1, Stuck: true, Problem: "the root source is unavailable"}
	rootCtl := &fixed{CA: rotation.CARoot, Phase: "wait-for-workloads", PhaseCode: 2, Paused: true}
	require.NoError(t, rotation.RegisterMetrics(reg, inter, rootCtl))
	const help = `
# HELP meshca_rotation_paused 1 while an operator has paused the controller's rotation (meshca rotate pause), else 0.
# TYPE meshca_rotation_paused gauge
meshca_rotation_paused{ca="intermediate"} %d
meshca_rotation_paused{ca="root"} %d
# HELP meshca_rotation_stuck 1 while the controller reports its rotation stuck (a step keeps failing or a phase outlasted its maximum), else 0.
# TYPE meshca_rotation_stuck gauge
meshca_rotation_stuck{ca="intermediate"} %d
meshca_rotation_stuck{ca="root"} %d
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(help, 0, 1, 1, 0)),
		"meshca_rotation_stuck", "meshca_rotation_paused"))

	inter.Stuck, inter.Problem = false, ""
	rootCtl.Paused, rootCtl.Stuck = false, true
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(help, 0, 0, 0, 1)),
		"meshca_rotation_stuck", "meshca_rotation_paused"))
}
