package main

import (
	"bytes"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

// exposition is what a registry with the journal's three metrics serves
// in the text format, written by client_golang itself.
func exposition(t *testing.T, groups, records float64, observations ...float64) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	g := prometheus.NewCounter(prometheus.CounterOpts{Name: metricJournalGroups, Help: "g"})
	r := prometheus.NewCounter(prometheus.CounterOpts{Name: metricJournalRecords, Help: "r"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricJournalWrite, Help: "w", Buckets: []float64{0.001, 0.002, 0.004}})
	reg.MustRegister(g, r, h)
	g.Add(groups)
	r.Add(records)
	for _, o := range observations {
		h.Observe(o)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		require.NoError(t, enc.Encode(mf))
	}
	return b.Bytes()
}

func TestJournalStats_PerRunFiguresFromTwoScrapes(t *testing.T) {
	before, err := parseJournalMetrics(exposition(t, 2, 3, 0.0005, 0.0005))
	require.NoError(t, err)
	// 10 more writes of 60 records: 4 in (0, 1ms], 4 in (1, 2ms], 2 in
	// (2, 4ms]; the two before stay out of the run's figures.
	after, err := parseJournalMetrics(exposition(t, 12, 63,
		0.0005, 0.0005, // before
		0.0002, 0.0004, 0.0006, 0.0008, 0.0012, 0.0014, 0.0016, 0.0018, 0.003, 0.0035))
	require.NoError(t, err)
	run, err := after.since(before)
	require.NoError(t, err)
	require.Equal(t, 6.0, run.recordsPerWrite())
	require.Equal(t, []float64{4, 8, 10, 10}, run.counts)
	require.True(t, math.IsInf(run.bounds[3], 1))
	// histogram_quantile: rank 5 of 10 is the first of (1ms, 2ms]'s 4: 1 +
	// 1*(5-4)/4 = 1.25 ms; rank 9.9 is in (2ms, 4ms]: 2 + 2*(9.9-8)/2 =
	// 3.9 ms; rank 2 is in the first bucket, from 0: 1*2/4 = 0.5 ms.
	require.InDelta(t, 0.00125, run.quantile(0.5), 1e-12)
	require.InDelta(t, 0.0039, run.quantile(0.99), 1e-12)
	require.InDelta(t, 0.0005, run.quantile(0.2), 1e-12)
}

func TestJournalStats_TheInfBucketGivesTheLastBound(t *testing.T) {
	s, err := parseJournalMetrics(exposition(t, 2, 2, 0.0005, 9))
	require.NoError(t, err)
	require.Equal(t, 0.004, s.quantile(0.99), "above the last bound, as histogram_quantile: that bound")
	empty, err := parseJournalMetrics(exposition(t, 0, 0))
	require.NoError(t, err)
	require.True(t, math.IsNaN(empty.quantile(0.5)))
	require.True(t, math.IsNaN(empty.recordsPerWrite()))
	onlyInf := journalStats{bounds: []float64{math.Inf(1)}, counts: []float64{3}}
	require.True(t, math.IsNaN(onlyInf.quantile(0.5)), "no finite bound: NaN, as histogram_quantile")
}

func TestJournalStats_RefusesWhatIsMissingOrChanged(t *testing.T) {
	_, err := parseJournalMetrics([]byte("# TYPE meshca_store_journal_groups_total counter\nmeshca_store_journal_groups_total 3\n"))
	require.ErrorContains(t, err, "no single counter meshca_store_journal_records_total")
	_, err = parseJournalMetrics([]byte("# TYPE meshca_store_journal_groups_total counter\nmeshca_store_journal_groups_total 3\n" +
		"# TYPE meshca_store_journal_records_total counter\nmeshca_store_journal_records_total 3\n"))
	require.ErrorContains(t, err, "no single histogram meshca_store_journal_write_duration_seconds")
	a := journalStats{bounds: []float64{0.001, math.Inf(1)}, counts: []float64{1, 1}}
	b := journalStats{bounds: []float64{0.002, math.Inf(1)}, counts: []float64{1, 1}}
	_, err = a.since(b)
	require.ErrorContains(t, err, "changed its buckets")
}

func TestJournalLines_MedianOfTheRoundsOfEachMeshcaTarget(t *testing.T) {
	st := func(groups, records float64, counts ...float64) *journalStats {
		return &journalStats{groups: groups, records: records, bounds: []float64{0.001, 0.002, math.Inf(1)}, counts: counts}
	}
	runs := []peerRun{
		{target: "meshca classical", concurrency: 16, journal: st(10, 40, 10, 10, 10)},    // 4/write, p50 0.5 ms
		{target: "meshca classical", concurrency: 16, journal: st(10, 60, 0, 10, 10)},     // 6/write, p50 1.5 ms
		{target: "meshca classical", concurrency: 16, journal: st(10, 80, 0, 0, 10)},      // 8/write, p50 2 ms
		{target: "istiod", concurrency: 16},                                               // no journal
		{target: "meshca catalyst", concurrency: 64, journal: st(0, 0, 0, 0, 0)},          // no writes: left out
		{target: "meshca classical", concurrency: 64, journal: st(4, 80, 4, 4, 4)},        // 20/write
		{target: "meshca catalyst", concurrency: 16, journal: st(100, 300, 50, 100, 100)}, // 3/write, p50 1 ms
	}
	targets := []*peerTarget{{name: "meshca classical"}, {name: "istiod"}, {name: "meshca catalyst"}}
	require.Equal(t, []string{
		"c=16: meshca's journal writes (its meshca_store_journal_records_total and meshca_store_journal_write_duration_seconds): " +
			"meshca classical 6.0 records per write, p50 1.50 ms, p99 1.99 ms; meshca catalyst 3.0 records per write, p50 1.00 ms, p99 1.98 ms",
		"c=64: meshca's journal writes (its meshca_store_journal_records_total and meshca_store_journal_write_duration_seconds): " +
			"meshca classical 20.0 records per write, p50 0.50 ms, p99 0.99 ms",
	}, journalLines(runs, []int{16, 64}, targets))
}
