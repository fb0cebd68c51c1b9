package boltstore

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// journalCounts are the issuance journal's counters, read at scrape time
// (JournalCollector). The committer writes them.
type journalCounts struct {
	groups, records atomic.Uint64
	// applies: transactions that applied journaled records beside the
	// commits; checkpoints: those in the commit loop (a few records, an
	// idle journal, a flush or a prune, a full journal).
	applies, checkpoints atomic.Uint64
	// waits: groups that found their half full and had to wait for a
	// transaction (the other half not yet applied).
	waits atomic.Uint64
	// write: the time of each group's journal write, to the end of its
	// sync (newJournalWriteSeconds).
	write prometheus.Histogram
}

// newJournalWriteSeconds is the histogram of journal write times: the
// embedded store's analogue of etcd's WAL fsync duration
// (etcd_disk_wal_fsync_duration_seconds). Every reply of a group waits for
// its write, so its tail is the disk's share of the issuance latency, and
// a rising one is a slow or overloaded volume. The buckets double from
// 62.5 µs (a local NVMe flush) to 4.096 s, with a bound at 0.512 s, as
// etcd's (1 ms to 8.192 s), so that an alert at 0.5 s is not decided
// inside a bucket twice as wide.
func newJournalWriteSeconds() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "meshca_store_journal_write_duration_seconds",
		Help:    "Time of each durable journal write of the embedded store, from the write to the end of its sync (not the wait for room in a full journal, see meshca_store_journal_waits_total); the replies of the group's issuance records wait for it.",
		Buckets: prometheus.ExponentialBuckets(0.0000625, 2, 17),
	})
}

var (
	descJournalGroups = prometheus.NewDesc("meshca_store_journal_groups_total",
		"Journal writes of the embedded store: each one durable write (and sync) shared by a group of issuance records.", nil, nil)
	descJournalRecords = prometheus.NewDesc("meshca_store_journal_records_total",
		"Issuance records written to the embedded store's journal (records / groups is the mean group size).", nil, nil)
	descJournalApplies = prometheus.NewDesc("meshca_store_journal_transactions_total",
		"bbolt transactions that applied journaled records: beside the commits, or in the commit loop, where commits wait for them.", []string{"where"}, nil)
	descJournalWaits = prometheus.NewDesc("meshca_store_journal_waits_total",
		"Groups that found the journal's half full while the other half was still being applied, and waited for a bbolt transaction.", nil, nil)
	descJournalDirect = prometheus.NewDesc("meshca_store_journal_direct_io",
		"1 when the journal is written with direct I/O and RWF_DSYNC; 0 with pwrite and fdatasync (the file system refused O_DIRECT).", nil, nil)
)

type journalCollector struct{ s *Store }

// JournalCollector returns the metrics of the store's issuance journal.
func (s *Store) JournalCollector() prometheus.Collector { return journalCollector{s} }

func (c journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJournalGroups, descJournalRecords, descJournalApplies, descJournalWaits, descJournalDirect} {
		ch <- d
	}
	c.s.writes.counts.write.Describe(ch)
}

func (c journalCollector) Collect(ch chan<- prometheus.Metric) {
	n := &c.s.writes.counts
	ch <- prometheus.MustNewConstMetric(descJournalGroups, prometheus.CounterValue, float64(n.groups.Load()))
	ch <- prometheus.MustNewConstMetric(descJournalRecords, prometheus.CounterValue, float64(n.records.Load()))
	ch <- prometheus.MustNewConstMetric(descJournalApplies, prometheus.CounterValue, float64(n.applies.Load()), "beside_commits")
	ch <- prometheus.MustNewConstMetric(descJournalApplies, prometheus.CounterValue, float64(n.checkpoints.Load()), "commit_loop")
	ch <- prometheus.MustNewConstMetric(descJournalWaits, prometheus.CounterValue, float64(n.waits.Load()))
	direct := 0.0
	if c.s.writes.direct {
		direct = 1
	}
	ch <- prometheus.MustNewConstMetric(descJournalDirect, prometheus.GaugeValue, direct)
	ch <- n.write
}
