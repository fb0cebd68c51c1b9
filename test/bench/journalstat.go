package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// journalStats is what meshca's own metrics say of its issuance journal
// (the embedded store): the journal writes (groups), the records in them,
// and the histogram of the writes' durations as cumulative bucket counts.
type journalStats struct {
	groups, records float64
	bounds          []float64 // upper bounds, ascending, +Inf last
	counts          []float64 // cumulative, one per bound
}

// Metric names, from ca/store/boltstore/metrics.go.
const (
	metricJournalGroups  = "meshca_store_journal_groups_total"
	metricJournalRecords = "meshca_store_journal_records_total"
	metricJournalWrite   = "meshca_store_journal_write_duration_seconds"
)

// scrapeJournal reads the journal's metrics from meshca's /metrics.
func scrapeJournal(url string) (journalStats, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return journalStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return journalStats{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return journalStats{}, err
	}
	return parseJournalMetrics(body)
}

// parseJournalMetrics reads the journal's metrics from a Prometheus text
// exposition; each must be there, once.
func parseJournalMetrics(body []byte) (journalStats, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return journalStats{}, err
	}
	one := func(name string) (float64, error) {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetCounter() == nil {
			return 0, fmt.Errorf("no single counter %s in meshca's metrics", name)
		}
		return mf.GetMetric()[0].GetCounter().GetValue(), nil
	}
	var s journalStats
	if s.groups, err = one(metricJournalGroups); err != nil {
		return journalStats{}, err
	}
	if s.records, err = one(metricJournalRecords); err != nil {
		return journalStats{}, err
	}
	mf := mfs[metricJournalWrite]
	if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetHistogram() == nil {
		return journalStats{}, fmt.Errorf("no single histogram %s in meshca's metrics", metricJournalWrite)
	}
	h := mf.GetMetric()[0].GetHistogram()
	for _, b := range h.GetBucket() {
		s.bounds = append(s.bounds, b.GetUpperBound())
		s.counts = append(s.counts, float64(b.GetCumulativeCount()))
	}
	if len(s.bounds) == 0 || !math.IsInf(s.bounds[len(s.bounds)-1], 1) {
		// The exposition leaves +Inf implicit in the protobuf form; the
		// text form always has it, and the sample count is its count.
		s.bounds = append(s.bounds, math.Inf(1))
		s.counts = append(s.counts, float64(h.GetSampleCount()))
	}
	return s, nil
}

// since is s minus an earlier scrape of the same process.
func (s journalStats) since(before journalStats) (journalStats, error) {
	if !slices.Equal(s.bounds, before.bounds) {
		return journalStats{}, fmt.Errorf("%s changed its buckets between two scrapes", metricJournalWrite)
	}
	d := journalStats{groups: s.groups - before.groups, records: s.records - before.records, bounds: s.bounds}
	for i := range s.counts {
		d.counts = append(d.counts, s.counts[i]-before.counts[i])
	}
	return d, nil
}

// recordsPerWrite is the mean group: records over journal writes; NaN
// without writes.
func (s journalStats) recordsPerWrite() float64 {
	if s.groups == 0 {
		return math.NaN()
	}
	return s.records / s.groups
}

// quantile estimates the q-quantile of the write durations as
// Prometheus's histogram_quantile does: linear within the bucket that
// holds it, from 0 below the first bound; in the +Inf bucket, the last
// finite bound. NaN without observations.
func (s journalStats) quantile(q float64) float64 {
	if len(s.counts) < 2 || s.counts[len(s.counts)-1] == 0 {
		return math.NaN() // no observations, or no finite bound (as histogram_quantile)
	}
	rank := q * s.counts[len(s.counts)-1]
	i, _ := slices.BinarySearchFunc(s.counts, rank, func(c, r float64) int {
		switch {
		case c < r:
			return -1
		case c > r:
			return 1
		}
		return 0
	})
	if math.IsInf(s.bounds[i], 1) {
		return s.bounds[len(s.bounds)-2]
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = s.bounds[i-1], s.counts[i-1]
	}
	in := s.counts[i] - below
	if in == 0 {
		return s.bounds[i]
	}
	return lower + (s.bounds[i]-lower)*(rank-below)/in
}

// journalLines are, per concurrency, each meshca target's records per
// journal write and the writes' p50 and p99, each the median of the
// rounds, from meshca's own metrics over the whole runs (warm-up
// included, as in the CPU figures).
func journalLines(runs []peerRun, conc []int, targets []*peerTarget) []string {
	var lines []string
	for _, c := range conc {
		var parts []string
		for _, t := range targets {
			var per, p50, p99 []float64
			for _, r := range runs {
				if r.target == t.name && r.concurrency == c && r.journal != nil && r.journal.groups > 0 {
					per = append(per, r.journal.recordsPerWrite())
					p50 = append(p50, r.journal.quantile(0.5))
					p99 = append(p99, r.journal.quantile(0.99))
				}
			}
			if len(per) == 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.1f records per write, p50 %.2f ms, p99 %.2f ms",
				t.name, median(per), 1000*median(p50), 1000*median(p99)))
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("c=%d: meshca's journal writes (its %s and %s): %s",
				c, metricJournalRecords, metricJournalWrite, strings.Join(parts, "; ")))
		}
	}
	return lines
}

// median of xs (the upper one of an even count, as medianRun), which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
